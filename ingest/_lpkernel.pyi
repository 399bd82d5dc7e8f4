# Type stub for the compiled line-protocol assembly kernel (ingest/_lpkernel.c).
from typing import Any, TypeAlias

from numpy.typing import NDArray

# contiguous, C-ordered; item sizes are checked at run time (TypeError)
Buffer: TypeAlias = bytes | NDArray[Any]

def assemble(
    line_first: Buffer,
    line_group: Buffer,
    line_ts: Buffer,
    heads: Buffer,
    head_off: Buffer,
    series: Buffer,
    keys: Buffer,
    key_off: Buffer,
    kind: Buffer,
    value_i64: Buffer,
    text: Buffer,
    text_start: Buffer,
    text_len: Buffer,
    line_ends_out: Buffer,
) -> bytes: ...
