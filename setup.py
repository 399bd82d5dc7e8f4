"""Build hook for the one compiled piece: the line-protocol assembly kernel (ingest/_lpkernel.c).

Everything else is declared in pyproject.toml. The extension is optional: where no C compiler is
available the install still succeeds and ``ingest.lineprotocol`` uses its pure-numpy layout
(byte-identical output, about a third of the speed); ``zhizao ingest`` logs which one it runs.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "ingest._lpkernel",
            sources=["ingest/_lpkernel.c"],
            extra_compile_args=["-O3"],
            optional=True,
        )
    ]
)
