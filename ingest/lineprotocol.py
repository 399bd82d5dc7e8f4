"""Vectorized InfluxDB line-protocol encoder: ``Batch`` -> bytes, with no per-sample Python loop.

How it works, per chunk of samples:

1. Every series' text pieces are encoded once and kept in fixed-width byte tables: the line head
   (escaped measurement and tags, then a space) per measurement+tags group, and ``field=`` per
   series. Tables grow with the ``SeriesTable``; a batch only indexes into them.
2. Consecutive samples of the same group and timestamp, with strictly increasing field names, form
   one line (``m,t=v a=1,b=2i 17..``): fields of one point stay together, in the sorted order
   InfluxDB and ``influxdb_client.Point`` use. Other orders still encode correctly, as more lines.
3. Values are formatted in bulk: floats and integers with orjson (Rust, shortest round-trip digits,
   30-60 M values/s), with the rows Python would print in exponent notation re-done by numpy's
   ``repr``-equal formatter; booleans from a two-row table; strings escaped with numpy's string
   kernels.
4. The pieces are laid out in order, one of two ways with identical bytes:
   - ``kernel="c"`` (the default where it was built): ``ingest/_lpkernel.c`` copies heads, keys and
     float texts and writes integers, booleans and escaped strings straight into the body, in one
     pass with the GIL released. Floats are still formatted by orjson here, vectorized.
   - ``kernel="numpy"`` (no compiler needed): one ``uint8`` matrix (a row per line head and a row per
     sample, each piece in its own column region, left-aligned), and one compaction squeezes out the
     NUL padding. Measured: about half the speed of the C layout, dominated by the compaction.

Samples that InfluxDB would reject or silently corrupt are refused per sample with a reason and
counted; the rest of the batch is encoded.
"""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import orjson
from numpy.typing import NDArray

from zhizao.model import Batch, FieldType, SeriesTable

try:  # the compiled assembly kernel (setup.py builds it; optional where no C compiler exists)
    from ingest import _lpkernel
except ImportError:  # pragma: no cover - exercised on machines without a compiler
    _lpkernel = None  # type: ignore[assignment]
# what kernel="auto" picks: the compiled layout, or the numpy fallback
DEFAULT_KERNEL = "c" if _lpkernel is not None else "numpy"

__all__ = [
    "DEFAULT_KERNEL",
    "INFLUX_MAX_STRING_BYTES",
    "INFLUX_MAX_TS_NS",
    "INFLUX_MIN_TS_NS",
    "REJECT_REASONS",
    "EncodedBatch",
    "LineProtocolEncoder",
]

# InfluxDB's representable time range (models.MinNanoTime / MaxNanoTime).
INFLUX_MIN_TS_NS = -9223372036854775806
INFLUX_MAX_TS_NS = 9223372036854775806
# InfluxDB refuses string field values longer than 64 KiB.
INFLUX_MAX_STRING_BYTES = 65535

# Reason codes; position = code - 1 (0 means accepted).
REJECT_REASONS: tuple[str, ...] = (
    "non_finite_float",  # NaN, +inf, -inf: InfluxDB has no representation
    "timestamp_out_of_range",
    "string_too_long",
    "nul_in_string",  # NUL bytes are not valid in line protocol text
    "invalid_utf8",  # text that has no UTF-8 form (lone surrogates)
    "empty_tag_value",
    "empty_name",  # empty measurement, tag key or field key
    "control_character_in_name",  # newline/CR/tab in a name: breaks or corrupts the line
    # a backslash at the end or before , = space " : InfluxDB would read it as an escape
    "ambiguous_backslash_in_name",
    "unknown_series",
    # InfluxDB drops these without an error: a field (or tag) key "time" beside other fields,
    # and a line whose measurement starts with "#" (read as a comment)
    "reserved_name_time",
    "measurement_starts_with_hash",
)
_CODE = {name: i + 1 for i, name in enumerate(REJECT_REASONS)}

# Rows are processed in chunks so the working matrix stays in cache-friendly, bounded memory.
CHUNK_SAMPLES = 65_536
_COMMA, _SPACE, _NEWLINE, _QUOTE, _E, _LBRACKET, _RBRACKET = 44, 32, 10, 34, 101, 91, 93

_ESCAPE_MEASUREMENT = str.maketrans({",": r"\,", " ": r"\ "})
_ESCAPE_KEY = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ "})
_AMBIGUOUS_BACKSLASH = re.compile(r'\\([,= "]|$)')
_CONTROL = ("\n", "\r", "\t", "\x00")


def _split_joined(
    joined: str,
) -> tuple[NDArray[np.uint8], NDArray[np.int64], NDArray[np.int64]]:
    """Encode NUL-joined text once; the buffer gets a leading NUL so a window may start one byte
    before the first value. Returns the buffer, value starts and byte lengths."""
    buf = np.frombuffer(("\x00" + joined + "\x00").encode("utf-8"), np.uint8)
    seps = np.flatnonzero(buf == 0)
    starts = (seps[:-1] + 1).astype(np.int64)
    return buf, starts, (seps[1:] - starts).astype(np.int64)


def _windows(
    buf: NDArray[np.uint8], starts: NDArray[np.int64], lens: NDArray[np.int64], width: int
) -> NDArray[np.uint8]:
    """Row i = ``buf[starts[i] : starts[i] + lens[i]]``, NUL-padded to ``width``."""
    padded = np.concatenate((buf, np.zeros(width, np.uint8)))
    win = np.lib.stride_tricks.sliding_window_view(padded, width)[starts]
    win[np.arange(width) >= lens[:, None]] = 0
    return win


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _name_problem(name: str) -> str | None:
    if name == "":
        return "empty_name"
    if any(c in name for c in _CONTROL):
        return "control_character_in_name"
    if "\\" in name and _AMBIGUOUS_BACKSLASH.search(name):
        return "ambiguous_backslash_in_name"
    if not _encodable(name):
        return "invalid_utf8"
    return None


def _byte_table(items: list[bytes]) -> tuple[NDArray[np.uint8], NDArray[np.int64]]:
    """Fixed-width left-aligned byte matrix of ``items`` and their lengths."""
    width = max((len(b) for b in items), default=1) or 1
    mat = np.zeros((len(items), width), dtype=np.uint8)
    lens = np.fromiter((len(b) for b in items), dtype=np.int64, count=len(items))
    if items:
        flat = np.frombuffer(b"".join(items), dtype=np.uint8)
        mat[np.arange(width) < lens[:, None]] = flat
    return mat, lens


def _numbers_to_matrix(values: NDArray[np.generic]) -> tuple[NDArray[np.uint8], NDArray[np.int64]]:
    """Format numbers with orjson into a NUL-padded byte matrix (a row per value) and lengths.

    Each row is a window of orjson's output starting at the value, with everything after the
    value zeroed: no scatter, one gather and one comparison.
    """
    raw = np.frombuffer(
        orjson.dumps(np.ascontiguousarray(values), option=orjson.OPT_SERIALIZE_NUMPY), np.uint8
    )
    # raw is "[v0,v1,...]": value i starts after the i-th separator ("[" or ",")
    seps = np.flatnonzero((raw == _COMMA) | (raw == _LBRACKET) | (raw == _RBRACKET))
    starts = seps[:-1] + 1
    lens = seps[1:] - starts
    width = int(lens.max())
    padded = np.concatenate((raw, np.zeros(width, np.uint8)))
    windows = np.lib.stride_tricks.sliding_window_view(padded, width)[starts]
    windows[np.arange(width) >= lens[:, None]] = 0
    return windows, lens.astype(np.int64)


def _line_starts(
    s: NDArray[np.int32], g: NDArray[np.int32], ts: NDArray[np.int64]
) -> NDArray[np.bool_]:
    """True where a sample starts a new line: another point group or timestamp, or a series that
    repeats or goes back (a line never holds a field twice, and keeps Point's sorted order)."""
    start = np.ones(len(s), dtype=bool)
    start[1:] = (g[1:] != g[:-1]) | (ts[1:] != ts[:-1]) | (s[1:] <= s[:-1])
    return start


def _concat_table(items: list[bytes]) -> tuple[bytes, NDArray[np.int64]]:
    """``items`` joined, and offsets: item i is ``buf[off[i]:off[i + 1]]``."""
    off = np.zeros(len(items) + 1, np.int64)
    np.cumsum([len(b) for b in items], out=off[1:])
    return b"".join(items), off


def _float_texts(
    values: NDArray[np.float64],
) -> tuple[NDArray[np.uint8], NDArray[np.int64], NDArray[np.int64]]:
    """Python ``str(float)`` of each value minus a trailing ``.0`` (as ``Point`` writes it), as
    slices of one buffer: returns the buffer, starts and lengths."""
    raw = np.frombuffer(
        orjson.dumps(np.ascontiguousarray(values), option=orjson.OPT_SERIALIZE_NUMPY), np.uint8
    )
    seps = np.flatnonzero((raw == _COMMA) | (raw == _LBRACKET) | (raw == _RBRACKET))
    starts = seps[:-1] + 1
    lens = seps[1:] - starts
    absval = np.abs(values)
    # Python switches to exponent notation outside [1e-4, 1e16); orjson's switch points differ
    redo = ((absval < 1e-4) & (values != 0)) | (absval >= 1e16)
    e_pos = np.flatnonzero(raw == _E)
    if len(e_pos):
        redo[np.searchsorted(starts, e_pos, "right") - 1] = True
    buf = raw
    if redo.any():
        # numpy's float->bytes cast is repr-equal (dragon4, shortest round-trip) but 20x slower
        # than orjson: only the few exponent-notation values take it
        fixed = values[redo].astype("S32").tolist()
        flen = np.fromiter((len(t) for t in fixed), np.int64, count=len(fixed))
        starts[redo] = len(raw) + np.cumsum(flen) - flen
        lens[redo] = flen
        buf = np.concatenate((raw, np.frombuffer(b"".join(fixed), np.uint8)))
    last = starts + lens - 1
    whole = (lens >= 3) & (buf[last] == ord("0")) & (buf[last - 1] == ord("."))
    lens[whole] -= 2
    return buf, starts.astype(np.int64), lens.astype(np.int64)


def _format_floats(values: NDArray[np.float64]) -> tuple[NDArray[np.uint8], NDArray[np.int64]]:
    """``_float_texts`` as a NUL-padded byte matrix (a row per value) and lengths."""
    buf, starts, lens = _float_texts(values)
    return _windows(buf, starts, lens, int(lens.max())), lens


@dataclass
class EncodedBatch:
    """Line protocol for one batch, with what was refused and where lines end.

    The body is kept as the encoder's chunks (``parts``) so that no copy joins them unless someone
    asks for ``body``; ``ingest.influx.chunks.split_body`` cuts it into requests at ``line_ends``.
    """

    parts: list[bytes]
    lines: int
    samples: int
    line_ends: NDArray[np.int64]  # byte offset just after each line's "\n", in the joined body
    line_samples: NDArray[np.int64]  # samples (fields) per line
    rejected_index: NDArray[np.int64] = field(default_factory=lambda: np.empty(0, np.int64))
    rejected_reason: NDArray[np.uint8] = field(default_factory=lambda: np.empty(0, np.uint8))
    _body: bytes | None = field(default=None, repr=False)

    @property
    def body(self) -> bytes:
        if self._body is None:
            self._body = self.parts[0] if len(self.parts) == 1 else b"".join(self.parts)
        return self._body

    @property
    def nbytes(self) -> int:
        return sum(len(p) for p in self.parts)

    def rejected_counts(self) -> dict[str, int]:
        codes, counts = np.unique(self.rejected_reason, return_counts=True)
        return {REJECT_REASONS[int(c) - 1]: int(n) for c, n in zip(codes, counts, strict=True)}

    def reason_of(self, i: int) -> str:
        """Reason for the i-th rejected sample (``rejected_index[i]``)."""
        return REJECT_REASONS[int(self.rejected_reason[i]) - 1]


class _SeriesTexts:
    """Per-series and per-group encoded pieces, rebuilt when the series table grows."""

    def __init__(self, *, matrices: bool) -> None:
        self.size = -1
        # the padded byte tables only the numpy layout reads; the C layout reads buffers + offsets
        self.matrices = matrices

    def refresh(self, table: SeriesTable) -> None:
        if self.size == len(table):
            return
        keys = table.keys
        n = len(keys)
        reason = np.zeros(n, np.uint8)
        heads: dict[int, bytes] = {}
        group_reason: dict[int, int] = {}
        fields: list[bytes] = []
        groups = table.groups
        for i, key in enumerate(keys):
            g = int(groups[i])
            if g not in heads:
                problem = _name_problem(key.measurement)
                if problem is None and key.measurement.startswith("#"):
                    problem = "measurement_starts_with_hash"
                parts = [key.measurement.translate(_ESCAPE_MEASUREMENT)]
                for tk, tv in key.tags:
                    problem = problem or _name_problem(tk)
                    if tk == "time":
                        problem = problem or "reserved_name_time"
                    if tv == "":
                        problem = problem or "empty_tag_value"
                    elif any(c in tv for c in _CONTROL):
                        problem = problem or "control_character_in_name"
                    elif "\\" in tv and _AMBIGUOUS_BACKSLASH.search(tv):
                        problem = problem or "ambiguous_backslash_in_name"
                    elif not _encodable(tv):
                        problem = problem or "invalid_utf8"
                    parts.append(f"{tk.translate(_ESCAPE_KEY)}={tv.translate(_ESCAPE_KEY)}")
                # a refused group's head is never written; surrogatepass only keeps encode() quiet
                heads[g] = (",".join(parts) + " ").encode("utf-8", "surrogatepass")
                group_reason[g] = _CODE[problem] if problem else 0
            field_problem = _name_problem(key.field)
            if field_problem is None and key.field == "time":
                field_problem = "reserved_name_time"
            reason[i] = group_reason[g] or (_CODE[field_problem] if field_problem else 0)
            fields.append(key.field.translate(_ESCAPE_KEY).encode("utf-8", "surrogatepass") + b"=")
        head_list = [heads[g] for g in range(len(heads))]
        if self.matrices:
            self.head_mat, self.head_len = _byte_table(head_list)
            # row 2*i: "key=" (first field of a line), row 2*i+1: ",key=" (a following field)
            self.field_mat, self.field_len = _byte_table([v for f in fields for v in (f, b"," + f)])
        else:
            self.head_buf, self.head_off = _concat_table(head_list)
            self.key_buf, self.key_off = _concat_table(fields)
        self.group = groups.copy()
        self.dtype = table.dtypes.copy()
        self.reason = reason
        # rank of each field name in sorted order: a line's fields must strictly increase in it
        order = sorted(range(n), key=lambda i: keys[i].field)
        rank = np.empty(n, np.int32)
        prev: str | None = None
        r = -1
        for i in order:
            if keys[i].field != prev:
                r += 1
                prev = keys[i].field
            rank[i] = r
        self.field_rank = rank
        self.size = n


class LineProtocolEncoder:
    """Encodes batches of one ``SeriesTable`` to line protocol (nanosecond precision)."""

    def __init__(
        self,
        table: SeriesTable,
        *,
        chunk_samples: int = CHUNK_SAMPLES,
        threads: int = 1,
        kernel: str = "auto",
    ) -> None:
        """``kernel``: "c" (the compiled assembly kernel), "numpy" (padded byte matrices, no
        compiler needed) or "auto" (C when it was built). Both give identical bytes."""
        if kernel not in ("auto", "c", "numpy"):
            raise ValueError(f"kernel must be 'auto', 'c' or 'numpy', not {kernel!r}")
        if kernel == "c" and _lpkernel is None:
            raise RuntimeError(
                "the compiled line-protocol kernel (ingest/_lpkernel.c) is not built: "
                "reinstall zhizao on a machine with a C compiler, or use kernel='numpy'"
            )
        self.kernel = "c" if kernel == "c" or (kernel == "auto" and _lpkernel) else "numpy"
        self.table = table
        self.chunk_samples = chunk_samples
        # numpy releases the GIL in most kernels used here: chunks encode in parallel threads
        self.threads = max(1, threads)
        self._pool: ThreadPoolExecutor | None = None
        self._texts = _SeriesTexts(matrices=self.kernel == "numpy")

    def validate(self, batch: Batch) -> NDArray[np.uint8]:
        """Reason code per sample (0 = accepted)."""
        t = self._texts
        t.refresh(self.table)
        n = len(batch)
        if n == 0:
            return np.zeros(0, np.uint8)
        s = batch.series
        known = (s >= 0) & (s < t.size)
        safe = np.where(known, s, 0)
        reason = np.where(known, t.reason[safe], np.uint8(_CODE["unknown_series"])).astype(np.uint8)
        dt = t.dtype[safe]
        ok = reason == 0
        bad_float = ok & (dt == FieldType.FLOAT) & ~np.isfinite(batch.value_f64)
        reason[bad_float] = _CODE["non_finite_float"]
        ok &= ~bad_float
        bad_ts = ok & ((batch.ts_ns < INFLUX_MIN_TS_NS) | (batch.ts_ns > INFLUX_MAX_TS_NS))
        reason[bad_ts] = _CODE["timestamp_out_of_range"]
        ok &= ~bad_ts
        is_str = ok & (dt == FieldType.STRING)
        if is_str.any():
            idx = np.flatnonzero(is_str)
            if batch.value_str is None:
                reason[idx] = _CODE["unknown_series"]
            else:
                values = batch.value_str[idx].tolist()
                bad = np.zeros(len(idx), np.uint8)
                # one C-level scan for NUL and for text that UTF-8 cannot encode (lone
                # surrogates); a per-value look only when one of them is present at all
                joined = "".join(values)
                if "\x00" in joined:
                    has_nul = np.fromiter(("\x00" in v for v in values), bool, count=len(values))
                    bad[has_nul] = _CODE["nul_in_string"]
                try:
                    joined.encode("utf-8")
                except UnicodeEncodeError:
                    bad[[not _encodable(v) for v in values]] = _CODE["invalid_utf8"]
                ok_vals = (
                    [v for v, b in zip(values, bad.tolist(), strict=True) if not b]
                    if bad.any()
                    else values
                )
                # UTF-8 takes at most 4 bytes per character: only when some value could be over
                # the limit are the exact byte lengths needed
                if ok_vals and max(map(len, ok_vals)) * 4 > INFLUX_MAX_STRING_BYTES:
                    nbytes = _split_joined("\x00".join(ok_vals))[2]
                    too_long = np.zeros(len(idx), bool)
                    too_long[bad == 0] = nbytes > INFLUX_MAX_STRING_BYTES
                    bad[too_long] = _CODE["string_too_long"]
                reason[idx] = np.where(bad > 0, bad, reason[idx])
        return reason

    def encode(self, batch: Batch) -> EncodedBatch:
        reason = self.validate(batch)
        rejected = np.flatnonzero(reason)
        good = batch if len(rejected) == 0 else batch.take(reason == 0)
        bodies: list[bytes] = []
        ends: list[NDArray[np.int64]] = []
        per_line: list[NDArray[np.int64]] = []
        offset = 0
        chunks = [
            good.take(slice(lo, lo + self.chunk_samples))  # type: ignore[arg-type]
            for lo in range(0, len(good), self.chunk_samples)
        ]
        if self.threads > 1 and len(chunks) > 1:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="lp-encode")
            results = list(self._pool.map(self._encode_chunk, chunks))
        else:
            results = [self._encode_chunk(c) for c in chunks]
        for body, line_ends, line_samples in results:
            bodies.append(body)
            ends.append(line_ends + offset)
            per_line.append(line_samples)
            offset += len(body)
        line_ends_all = np.concatenate(ends) if ends else np.empty(0, np.int64)
        return EncodedBatch(
            parts=bodies,
            lines=len(line_ends_all),
            samples=len(good),
            line_ends=line_ends_all,
            line_samples=np.concatenate(per_line) if per_line else np.empty(0, np.int64),
            rejected_index=rejected.astype(np.int64),
            rejected_reason=reason[rejected],
        )

    def _encode_chunk(self, b: Batch) -> tuple[bytes, NDArray[np.int64], NDArray[np.int64]]:
        if self.kernel == "c":
            return self._encode_chunk_c(b)
        return self._encode_chunk_numpy(b)

    def _encode_chunk_c(self, b: Batch) -> tuple[bytes, NDArray[np.int64], NDArray[np.int64]]:
        """Lines are grouped and floats formatted here, vectorized; the compiled kernel lays the
        pieces out in one pass (integers, booleans and string escaping included)."""
        t = self._texts
        n = len(b)
        s, g, ts = b.series, t.group[b.series], b.ts_ns
        start = _line_starts(s, g, ts)
        line_first = np.append(np.flatnonzero(start), n).astype(np.int64)
        first = line_first[:-1]
        dt = t.dtype[s]
        kind = dt.astype(np.uint8)  # FieldType numbering is the kernel's value-kind numbering
        text_start = np.zeros(n, np.int64)
        text_len = np.zeros(n, np.int64)
        bufs: list[NDArray[np.uint8]] = []
        used = 0
        f_idx = np.flatnonzero(dt == FieldType.FLOAT)
        if len(f_idx):
            fbuf, fstart, flen = _float_texts(b.value_f64[f_idx])
            text_start[f_idx] = fstart
            text_len[f_idx] = flen
            bufs.append(fbuf)
            used = len(fbuf)
        s_idx = np.flatnonzero(dt == FieldType.STRING)
        if len(s_idx):
            assert b.value_str is not None
            sbuf, sstart, slen = _split_joined("\x00".join(b.value_str[s_idx].tolist()))
            text_start[s_idx] = sstart + used
            text_len[s_idx] = slen
            bufs.append(sbuf)
        text = bufs[0] if len(bufs) == 1 else np.concatenate(bufs) if bufs else _NO_TEXT
        line_ends = np.empty(len(first), np.int64)
        body = _lpkernel.assemble(
            line_first,
            np.ascontiguousarray(g[first], np.int32),
            np.ascontiguousarray(ts[first], np.int64),
            t.head_buf,
            t.head_off,
            np.ascontiguousarray(s, np.int32),
            t.key_buf,
            t.key_off,
            kind,
            np.ascontiguousarray(b.value_i64, np.int64),
            text,
            text_start,
            text_len,
            line_ends,
        )
        return body, line_ends, np.diff(line_first)

    def _encode_chunk_numpy(self, b: Batch) -> tuple[bytes, NDArray[np.int64], NDArray[np.int64]]:
        t = self._texts
        n = len(b)
        s, g, ts = b.series, t.group[b.series], b.ts_ns
        start = _line_starts(s, g, ts)
        end = np.ones(n, dtype=bool)
        end[:-1] = start[1:]
        line_start_pos = np.flatnonzero(start)
        n_lines = len(line_start_pos)
        line_id = np.cumsum(start) - 1

        # --- value texts, by type ---------------------------------------------------------
        dt = t.dtype[s]
        val_lens = np.zeros(n, np.int64)
        pieces: list[tuple[NDArray[np.intp], NDArray[np.uint8], NDArray[np.int64]]] = []
        for kind in (FieldType.FLOAT, FieldType.INT, FieldType.BOOL):
            idx = np.flatnonzero(dt == kind)
            if not len(idx):
                continue
            if kind == FieldType.FLOAT:
                mat, lens = _format_floats(b.value_f64[idx])
            elif kind == FieldType.INT:
                mat, lens = _numbers_to_matrix(b.value_i64[idx])
                mat = np.pad(mat, ((0, 0), (0, 1)))
                mat[np.arange(len(idx)), lens] = ord("i")
                lens = lens + 1
            else:
                truth = (b.value_i64[idx] != 0).astype(np.intp)
                mat = _BOOL_MAT[truth]
                lens = _BOOL_LEN[truth]
            pieces.append((idx, mat, lens))
            val_lens[idx] = lens
        str_idx = np.flatnonzero(dt == FieldType.STRING)
        long_idx = np.empty(0, np.intp)  # strings spliced in after compaction
        long_bytes = np.empty(0, np.uint8)
        long_lens = np.empty(0, np.int64)
        if len(str_idx):
            assert b.value_str is not None
            joined = "\x00".join(b.value_str[str_idx].tolist())
            escaped = joined.replace("\\", "\\\\").replace('"', '\\"')
            buf, sstart, blen = _split_joined(escaped)
            short = blen <= _MATRIX_STRING_BYTES
            if short.any():
                sidx = str_idx[short]
                width = int(blen[short].max()) + 2
                # window from one byte before the value: replace that byte and the one after
                # the value with quotes
                mat = _windows(buf, sstart[short] - 1, blen[short] + 2, width)
                mat[:, 0] = _QUOTE
                mat[np.arange(len(sidx)), blen[short] + 1] = _QUOTE
                pieces.append((sidx, mat, blen[short] + 2))
                val_lens[sidx] = blen[short] + 2
            if not short.all():
                # A few long values (up to 64 KiB) must not widen the whole matrix: they get '""'
                # there and their bytes are inserted between the quotes after compaction.
                long_idx = str_idx[~short]
                long_lens = blen[~short]
                long_bytes = np.concatenate(
                    [buf[a : a + n] for a, n in zip(sstart[~short], long_lens, strict=True)]
                )
                pieces.append(
                    (long_idx, _EMPTY_STRING_MAT[np.zeros(len(long_idx), np.intp)], long_lens)
                )
                val_lens[long_idx] = 2
        w_val = max((p[1].shape[1] for p in pieces), default=1)

        # --- timestamps of line ends ------------------------------------------------------
        end_idx = np.flatnonzero(end)
        ts_mat, ts_len = _numbers_to_matrix(ts[end_idx])
        w_ts = ts_mat.shape[1] + 2  # " " + digits + "\n"

        # --- fast path: every line has the same number of fields (producers that emit whole
        # points): one matrix row per line, the sample regions a reshaped view of it. About a
        # quarter fewer bytes to compact than the general layout and no interleaving copies.
        n_fields = n // n_lines
        if (
            not len(long_idx)
            and n_fields * n_lines == n
            and bool((line_start_pos == np.arange(0, n, n_fields)).all())
        ):
            return self._encode_uniform(
                s, start, g, line_start_pos, pieces, val_lens, w_val, ts_mat, ts_len, n_fields
            )

        # --- the matrix: head rows and sample rows, interleaved; padding is NUL --------------
        # Line protocol never contains NUL (names with NUL are refused; string values are inserted
        # after compaction), so "m != 0" is the compaction mask: no per-region masks needed.
        w_field = t.field_mat.shape[1]
        c_field = 0
        c_val = c_field + w_field
        c_ts = c_val + w_val
        w_sample = c_ts + w_ts
        w_head = t.head_mat.shape[1]
        sm = np.zeros((n, w_sample), np.uint8)
        not_start = ~start
        field_row = 2 * s.astype(np.intp) + not_start
        sm[:, c_field : c_field + w_field] = t.field_mat[field_row]
        for idx, mat, _lens in pieces:
            sm[idx, c_val : c_val + mat.shape[1]] = mat
        tail = np.zeros((len(end_idx), w_ts), np.uint8)
        tail[:, 0] = _SPACE
        tail[:, 1 : 1 + ts_mat.shape[1]] = ts_mat
        tail[np.arange(len(end_idx)), ts_len + 1] = _NEWLINE
        sm[end_idx, c_ts : c_ts + w_ts] = tail

        width = max(w_sample, w_head)
        rows = n + n_lines
        head_rows = line_start_pos + np.arange(n_lines)
        sample_rows = np.arange(n) + line_id + 1
        m = np.zeros((rows, width), np.uint8)
        hg = g[line_start_pos]
        m[head_rows, :w_head] = t.head_mat[hg]
        m[sample_rows, :w_sample] = sm
        # bytes.translate deletes the NUL padding ~1.6x faster than boolean indexing here
        flat_bytes = m.tobytes().translate(None, b"\x00")

        flen = t.field_len[field_row]
        row_bytes = np.empty(rows, np.int64)
        row_bytes[head_rows] = t.head_len[hg]
        row_bytes[sample_rows] = flen + val_lens
        row_bytes[sample_rows[end_idx]] += ts_len + 2

        if len(long_idx):
            # position of each string's closing quote in the compacted buffer
            row_start = np.cumsum(row_bytes) - row_bytes
            srows = sample_rows[long_idx]
            close_quote = row_start[srows] + flen[long_idx] + 1
            flat = np.insert(
                np.frombuffer(flat_bytes, np.uint8), np.repeat(close_quote, long_lens), long_bytes
            )
            flat_bytes = flat.tobytes()
            row_bytes[srows] += long_lens

        line_ends = np.cumsum(row_bytes)[sample_rows[end_idx]]
        line_samples = np.diff(np.append(line_start_pos, n)).astype(np.int64)
        return flat_bytes, line_ends.astype(np.int64), line_samples

    def _encode_uniform(
        self,
        s: NDArray[np.int32],
        start: NDArray[np.bool_],
        g: NDArray[np.int32],
        line_start_pos: NDArray[np.intp],
        pieces: list[tuple[NDArray[np.intp], NDArray[np.uint8], NDArray[np.int64]]],
        val_lens: NDArray[np.int64],
        w_val: int,
        ts_mat: NDArray[np.uint8],
        ts_len: NDArray[np.int64],
        n_fields: int,
    ) -> tuple[bytes, NDArray[np.int64], NDArray[np.int64]]:
        """Layout for chunks whose lines all hold ``n_fields`` samples: row = head, the fields'
        ``[,]key=value`` slots, then `` ts\\n``."""
        t = self._texts
        n = len(s)
        n_lines = len(line_start_pos)
        w_field = t.field_mat.shape[1]
        w_slot = w_field + w_val
        w_head = t.head_mat.shape[1]
        w_ts = ts_mat.shape[1] + 2
        c_slots = w_head
        c_ts = c_slots + n_fields * w_slot
        m = np.zeros((n_lines, c_ts + w_ts), np.uint8)
        hg = g[line_start_pos]
        m[:, :w_head] = t.head_mat[hg]
        slots = m[:, c_slots:c_ts].reshape(n_lines, n_fields, w_slot)  # a view
        field_row = 2 * s.astype(np.intp) + ~start
        slots[:, :, :w_field] = t.field_mat[field_row].reshape(n_lines, n_fields, w_field)
        values = np.zeros((n, w_val), np.uint8)
        for idx, mat, _lens in pieces:
            values[idx, : mat.shape[1]] = mat
        slots[:, :, w_field:] = values.reshape(n_lines, n_fields, w_val)
        m[:, c_ts] = _SPACE
        m[:, c_ts + 1 : c_ts + 1 + ts_mat.shape[1]] = ts_mat
        m[np.arange(n_lines), c_ts + 1 + ts_len] = _NEWLINE
        flat_bytes = m.tobytes().translate(None, b"\x00")
        sample_bytes = (t.field_len[field_row] + val_lens).reshape(n_lines, n_fields).sum(axis=1)
        line_bytes = t.head_len[hg] + sample_bytes + ts_len + 2
        return (
            flat_bytes,
            np.cumsum(line_bytes).astype(np.int64),
            np.full(n_lines, n_fields, np.int64),
        )


_BOOL_MAT, _BOOL_LEN = _byte_table([b"false", b"true"])
_EMPTY_STRING_MAT, _ = _byte_table([b'""'])
_NO_TEXT = np.zeros(0, np.uint8)
# strings up to this many bytes go through the matrix; longer ones are spliced in
_MATRIX_STRING_BYTES = 256
