"""Line protocol for KPI component rows (a few hundred points per run, not a hot path).

Tag values come from validated site-model ids and field values are finite floats, so escaping
covers the characters line protocol reserves and nothing more.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
from numpy.typing import NDArray

__all__ = ["component_lines"]


def _esc(text: str) -> str:
    return text.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=").replace(" ", "\\ ")


def component_lines(
    measurement: str,
    tags: Sequence[Mapping[str, str]],
    ts_ns: NDArray[np.int64],
    fields: Mapping[str, NDArray[np.float64]],
) -> list[str]:
    """One line per row; tags sorted by key (InfluxDB's canonical order); NaN fields left out."""
    names = sorted(fields)
    cols = [fields[n].tolist() for n in names]
    lines: list[str] = []
    m = _esc(measurement)
    for i, row_tags in enumerate(tags):
        tag_part = "".join(f",{_esc(k)}={_esc(v)}" for k, v in sorted(row_tags.items()) if v)
        field_part = ",".join(
            f"{_esc(n)}={float(c[i])!r}"
            for n, c in zip(names, cols, strict=True)
            if not math.isnan(c[i])
        )
        if field_part:
            lines.append(f"{m}{tag_part} {field_part} {int(ts_ns[i])}")
    return lines
