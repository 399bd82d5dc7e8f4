"""The gateway frame: many samples of one gateway in one MQTT message, columnar.

Wire format, version 1 (all integers little-endian)::

    offset  size  field
    0       2     magic b"ZF"
    2       1     version (1)
    3       1     flags (bit 0: quality column omitted, every sample GOOD)
    4       4     meta_len     uint32: msgpack [gateway_id, seq, created_ns, n_samples, n_strings,
                                 session] (session: optional, see below)
    8       4     keys_len     uint32: msgpack [[measurement, [[tag, value], ...], field, dtype], ...]
    12      4     reserved (0)
    16      meta_len + keys_len bytes, then zero padding to a multiple of 8
            ts_ns   int64[n]
            value   int64[n]   float samples: IEEE-754 bits; int/bool samples: the integer
            series  int32[n]   index into this frame's key list
            quality uint8[n]   (absent with flag bit 0)
            strings msgpack [str, ...]: the values of the STRING samples, in sample order

``session`` is the gateway's session id: a random epoch chosen when the gateway's state (its
outbox) is created, like Sparkplug's bdSeq. A gateway replaced or reinstalled with a fresh state
directory starts its sequence numbers again at 1 under a new session, so ingest detects duplicates
per (gateway, session, seq). It is an optional trailing element of the meta array: a frame without
it (older gateways) decodes with session ``""``, and a decoder that does not know it ignores it
(msgpack arrays decode into structs with trailing defaults), so the format version stays 1.

Series keys travel once per frame and the samples as raw arrays, so decoding is ``np.frombuffer``
(no per-sample Python objects) plus a few vectorized checks. The key list is a separate block so
that a decoder can cache its local->global index mapping by the block's bytes: a gateway sends the
same keys in frame after frame. Measured against a columnar orjson frame in the ingest README.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass, field

import msgspec
import numpy as np
from numpy.typing import NDArray

from ingest.cache import ByteLRU
from zhizao.errors import DecodeError, ValidationError
from zhizao.model import Batch, FieldType, SeriesKey, SeriesTable

__all__ = [
    "CONTENT_TYPE",
    "DECODE_REASONS",
    "FORMAT_VERSION",
    "MAGIC",
    "MAX_FRAME_SAMPLES",
    "DecodedFrames",
    "FrameCodec",
    "FrameDecoder",
    "GatewayFrame",
    "RefusedKeys",
    "decode_many",
    "frame_topic",
    "frames_subscription",
    "parse_frame_topic",
    "peek_sample_count",
    "sample_dtypes",
]

MAGIC = b"ZF"
FORMAT_VERSION = 1
CONTENT_TYPE = "application/vnd.zhizao.frame.v1"
FLAG_ALL_GOOD = 0x01
_KNOWN_FLAGS = FLAG_ALL_GOOD
_HEAD = struct.Struct("<2sBBIII")
HEADER_SIZE = _HEAD.size  # 16
# A frame is one MQTT message; 16 Mi samples would already be ~350 MB. Refuse before allocating.
MAX_FRAME_SAMPLES = 1 << 24

# Every reason FrameCodec.decode can give (DecodeError.reason), for metrics and quarantine.
DECODE_REASONS: tuple[str, ...] = (
    "bad_magic",
    "unsupported_version",
    "unknown_flags",
    "truncated",
    "bad_header",
    "bad_series_key",
    "length_mismatch",
    "too_many_samples",
    "series_index_out_of_range",
    "bad_string_table",
)

_FIELD_TYPES = tuple(FieldType)
_FLOAT = np.uint8(FieldType.FLOAT)
_STRING = np.uint8(FieldType.STRING)


def frame_topic(site: str, gateway_id: str, prefix: str = "zhizao/v1") -> str:
    """``zhizao/v1/<site>/<gateway-id>/frames``."""
    for name, part in (("site", site), ("gateway id", gateway_id)):
        if not part or any(c in part for c in "/+#"):
            raise ValueError(f"{name} {part!r} cannot be an MQTT topic level")
    return f"{prefix}/{site}/{gateway_id}/frames"


def frames_subscription(group: str | None = None, prefix: str = "zhizao/v1") -> str:
    """The filter for all gateways' frames, as an MQTT 5 shared subscription when ``group``."""
    base = f"{prefix}/+/+/frames"
    return f"$share/{group}/{base}" if group else base


def parse_frame_topic(topic: str, prefix: str = "zhizao/v1") -> tuple[str, str] | None:
    """``(site, gateway_id)`` of a frames topic, ``None`` for any other topic."""
    if not topic.startswith(prefix + "/"):
        return None
    rest = topic[len(prefix) + 1 :].split("/")
    if len(rest) != 3 or rest[2] != "frames" or not rest[0] or not rest[1]:
        return None
    return rest[0], rest[1]


@dataclass(frozen=True, slots=True)
class GatewayFrame:
    """One gateway's samples: ``batch.series`` indexes ``table_keys`` (the frame's own keys)."""

    gateway_id: str
    seq: int
    table_keys: list[SeriesKey]
    batch: Batch
    created_ns: int = 0
    session: str = ""  # the gateway's session id ("" for gateways that send none)

    @classmethod
    def from_table(
        cls,
        gateway_id: str,
        seq: int,
        table: SeriesTable,
        batch: Batch,
        created_ns: int = 0,
        session: str = "",
    ) -> GatewayFrame:
        """A frame of ``batch`` carrying only the keys it uses (compact for a large table)."""
        used, local = np.unique(batch.series, return_inverse=True)
        keys = [table.keys[i] for i in used.tolist()]
        b = Batch(
            series=local.astype(np.int32).reshape(-1),
            ts_ns=batch.ts_ns,
            value_f64=batch.value_f64,
            value_i64=batch.value_i64,
            quality=batch.quality,
            value_str=batch.value_str,
        )
        return cls(gateway_id, seq, keys, b, created_ns, session)


class _Meta(msgspec.Struct, array_like=True, frozen=True):
    gateway_id: str
    seq: int
    created_ns: int
    n: int
    n_strings: int
    session: str = ""  # optional trailing element (absent in frames of older gateways)


# measurement, tags, field, dtype
_WireKey = tuple[str, list[tuple[str, str]], str, int]

_meta_decoder = msgspec.msgpack.Decoder(_Meta)
_keys_decoder = msgspec.msgpack.Decoder(list[_WireKey])
_strings_decoder = msgspec.msgpack.Decoder(list[str])
_encoder = msgspec.msgpack.Encoder()


def _pad8(n: int) -> int:
    return (-n) & 7


# Decoded key blocks, shared by every decoder of the process; bounded by bytes (ingest.cache).
# An entry costs its block (the dict key) plus the decoded keys: a SeriesKey with its tuples is
# a few hundred bytes plus its strings, estimated as 3x the block plus 200 bytes per key.
KEY_BLOCK_CACHE_BYTES = 32 * 1024 * 1024
_block_cache: ByteLRU[bytes, tuple[tuple[SeriesKey, ...], NDArray[np.uint8]]] = ByteLRU(
    KEY_BLOCK_CACHE_BYTES
)


def _keys_of_block(block: bytes) -> tuple[tuple[SeriesKey, ...], NDArray[np.uint8]]:
    """Keys and their types of a key block; cached, since a gateway repeats its block."""
    hit = _block_cache.get(block)
    if hit is not None:
        return hit
    entry = _decode_key_block(block)
    _block_cache.put(block, entry, 4 * len(block) + 200 * len(entry[0]))
    return entry


def _decode_key_block(block: bytes) -> tuple[tuple[SeriesKey, ...], NDArray[np.uint8]]:
    try:
        keys = _keys_from_wire(_keys_decoder.decode(block))
    except (msgspec.DecodeError, ValueError) as exc:  # invalid UTF-8 is a ValueError
        raise DecodeError(
            "bad_header", "frame series keys cannot be decoded", detail=str(exc)
        ) from exc
    dtypes = np.fromiter((int(k.dtype) for k in keys), np.uint8, len(keys))
    dtypes.flags.writeable = False
    return tuple(keys), dtypes


def _keys_from_wire(wire: list[_WireKey]) -> list[SeriesKey]:
    keys: list[SeriesKey] = []
    for measurement, tags, fld, dtype in wire:
        if not measurement or not fld:
            raise DecodeError(
                "bad_series_key", "frame has a series key with an empty measurement or field"
            )
        if not 0 <= dtype <= int(FieldType.STRING):
            raise DecodeError(
                "bad_series_key",
                f"frame series {measurement}.{fld} has an unknown value type",
                detail=f"dtype code {dtype}",
            )
        keys.append(SeriesKey(measurement, tuple(sorted(tags)), fld, _FIELD_TYPES[dtype]))
    if len(set(keys)) != len(keys):
        raise DecodeError("bad_series_key", "frame lists the same series key twice")
    return keys


@dataclass(frozen=True, slots=True)
class _Parsed:
    meta: _Meta
    keys_block: bytes
    ts_ns: NDArray[np.int64]
    bits: NDArray[np.int64]
    series: NDArray[np.int32]
    quality: NDArray[np.uint8] | None
    strings: list[str] | None


def _parse(payload: bytes | bytearray | memoryview) -> _Parsed:
    """Structural decoding, shared by the single-frame and the many-frame paths."""
    buf = memoryview(payload).cast("B") if not isinstance(payload, bytes) else payload
    size = len(buf)
    if size < 2 or bytes(buf[:2]) != MAGIC:
        raise DecodeError("bad_magic", "payload is not a zhizao gateway frame (no 'ZF' magic)")
    if size < 3:
        raise DecodeError("truncated", "frame ends inside its fixed header", detail=f"{size} bytes")
    if buf[2] != FORMAT_VERSION:
        raise DecodeError(
            "unsupported_version",
            "gateway frame version is not supported by this ingest",
            detail=f"version {buf[2]}, supported {FORMAT_VERSION}",
        )
    if size < HEADER_SIZE:
        raise DecodeError("truncated", "frame ends inside its fixed header", detail=f"{size} bytes")
    _, _, flags, meta_len, keys_len, _reserved = _HEAD.unpack_from(buf, 0)
    if flags & ~_KNOWN_FLAGS:
        raise DecodeError(
            "unknown_flags",
            "frame sets flags this ingest does not know",
            detail=f"flags 0x{flags:02x}",
        )
    head_end = HEADER_SIZE + meta_len + keys_len
    if head_end > size:
        raise DecodeError(
            "truncated",
            "frame ends inside its header",
            detail=f"header needs {head_end} bytes, payload has {size}",
        )
    try:
        meta = _meta_decoder.decode(buf[HEADER_SIZE : HEADER_SIZE + meta_len])
    except (msgspec.DecodeError, ValueError) as exc:  # invalid UTF-8 is a ValueError
        raise DecodeError("bad_header", "frame header cannot be decoded", detail=str(exc)) from exc
    n = meta.n
    if n < 0 or meta.n_strings < 0 or meta.n_strings > n or meta.seq < 0:
        raise DecodeError(
            "bad_header",
            "frame header has impossible counts",
            detail=f"n={n}, n_strings={meta.n_strings}, seq={meta.seq}",
        )
    if n > MAX_FRAME_SAMPLES:
        raise DecodeError(
            "too_many_samples",
            "frame declares more samples than ingest accepts",
            detail=f"{n} > {MAX_FRAME_SAMPLES}",
        )
    keys_block = bytes(buf[HEADER_SIZE + meta_len : head_end])
    data_start = head_end + _pad8(head_end)
    has_quality = not flags & FLAG_ALL_GOOD
    fixed = n * (8 + 8 + 4 + (1 if has_quality else 0))
    strings_start = data_start + fixed
    if strings_start > size:
        raise DecodeError(
            "truncated",
            "frame ends inside its sample arrays",
            detail=f"{n} samples need {strings_start} bytes, payload has {size}",
        )
    ts_ns = np.frombuffer(buf, np.dtype("<i8"), n, data_start)
    bits = np.frombuffer(buf, np.dtype("<i8"), n, data_start + 8 * n)
    series = np.frombuffer(buf, np.dtype("<i4"), n, data_start + 16 * n)
    quality = np.frombuffer(buf, np.uint8, n, data_start + 20 * n) if has_quality else None
    strings: list[str] | None = None
    if meta.n_strings:
        try:
            strings = _strings_decoder.decode(buf[strings_start:])
        except (msgspec.DecodeError, ValueError) as exc:  # invalid UTF-8 is a ValueError
            reason = "truncated" if "truncated" in str(exc).lower() else "bad_string_table"
            raise DecodeError(
                reason, "frame string values cannot be decoded", detail=str(exc)
            ) from exc
        if len(strings) != meta.n_strings:
            raise DecodeError(
                "bad_string_table",
                "frame string table has the wrong number of values",
                detail=f"{len(strings)} values, header says {meta.n_strings}",
            )
    elif strings_start != size:
        raise DecodeError(
            "length_mismatch",
            "frame is longer than its header declares",
            detail=f"{size - strings_start} trailing bytes",
        )
    return _Parsed(meta, keys_block, ts_ns, bits, series, quality, strings)


def _columns(
    p: _Parsed, dtypes: NDArray[np.uint8]
) -> tuple[NDArray[np.float64], NDArray[np.int64], NDArray[np.object_] | None]:
    """Typed value columns from the 8-byte value column; ``dtypes`` per sample."""
    is_f = dtypes == _FLOAT
    is_s = dtypes == _STRING
    f64 = np.where(is_f, p.bits.view(np.float64), 0.0)
    i64 = np.where(is_f | is_s, 0, p.bits)
    n_str = int(np.count_nonzero(is_s))
    if n_str != p.meta.n_strings:
        raise DecodeError(
            "bad_string_table",
            "frame string table does not match its string samples",
            detail=f"{n_str} string samples, {p.meta.n_strings} string values",
        )
    strs: NDArray[np.object_] | None = None
    if n_str:
        strs = np.full(len(dtypes), None, dtype=object)
        strs[is_s] = p.strings
    return f64, i64, strs


def _check_index(series: NDArray[np.int32], n_keys: int) -> None:
    if len(series) and (int(series.min()) < 0 or int(series.max()) >= n_keys):
        raise DecodeError(
            "series_index_out_of_range",
            "frame sample refers to a series the frame does not list",
            detail=f"indices {int(series.min())}..{int(series.max())}, {n_keys} keys",
        )


def peek_sample_count(payload: bytes) -> int:
    """Samples a frame declares (from its header only), 1 if it is not a readable frame.

    Used to size batches as messages arrive, before anything is decoded.
    """
    if len(payload) < HEADER_SIZE or payload[:2] != MAGIC:
        return 1
    meta_len = int.from_bytes(payload[4:8], "little")
    try:
        meta = _meta_decoder.decode(payload[HEADER_SIZE : HEADER_SIZE + meta_len])
    except (msgspec.DecodeError, ValueError):
        return 1
    return max(1, min(meta.n, MAX_FRAME_SAMPLES))


class FrameCodec:
    """Encode and decode single gateway frames (format version 1)."""

    @staticmethod
    def encode(frame: GatewayFrame) -> bytes:
        b = frame.batch
        n = len(b)
        keys = frame.table_keys
        dtypes = np.fromiter((int(k.dtype) for k in keys), np.uint8, len(keys))
        series = np.ascontiguousarray(b.series, dtype="<i4")
        _check_index(series, len(keys))
        sample_dt = dtypes[series] if n else np.empty(0, np.uint8)
        is_f = sample_dt == _FLOAT
        is_s = sample_dt == _STRING
        bits = np.where(is_f, np.ascontiguousarray(b.value_f64, "<f8").view("<i8"), b.value_i64)
        bits = np.where(is_s, 0, bits).astype("<i8", copy=False)
        n_strings = int(np.count_nonzero(is_s))
        strings_block = b""
        if n_strings:
            if b.value_str is None:
                raise ValueError("frame has STRING series but the batch has no value_str column")
            values = b.value_str[is_s].tolist()
            if any(not isinstance(v, str) for v in values):
                raise ValueError("frame STRING samples must hold str values")
            strings_block = _encoder.encode(values)
        head_fields: tuple[object, ...] = (
            frame.gateway_id,
            int(frame.seq),
            int(frame.created_ns),
            n,
            n_strings,
        )
        if frame.session:  # without a session the meta is byte-identical to older gateways'
            head_fields = (*head_fields, frame.session)
        meta = _encoder.encode(head_fields)
        keys_block = _encoder.encode(
            # tags are tuples of pairs and dtype an IntEnum: msgpack arrays and an int as they are
            [(k.measurement, k.tags, k.field, k.dtype) for k in keys]
        )
        all_good = not n or not np.any(b.quality)
        flags = FLAG_ALL_GOOD if all_good else 0
        head = _HEAD.pack(MAGIC, FORMAT_VERSION, flags, len(meta), len(keys_block), 0)
        head_end = HEADER_SIZE + len(meta) + len(keys_block)
        parts = [
            head,
            meta,
            keys_block,
            b"\0" * _pad8(head_end),
            np.ascontiguousarray(b.ts_ns, "<i8").tobytes(),
            bits.tobytes(),
            series.tobytes(),
        ]
        if not all_good:
            parts.append(np.ascontiguousarray(b.quality, np.uint8).tobytes())
        parts.append(strings_block)
        return b"".join(parts)

    @staticmethod
    def decode(payload: bytes | bytearray | memoryview) -> GatewayFrame:
        """Decode one frame; any defect raises ``DecodeError`` with a reason from DECODE_REASONS."""
        p = _parse(payload)
        keys_t, key_dt = _keys_of_block(p.keys_block)
        keys = list(keys_t)
        _check_index(p.series, len(keys))
        dtypes = key_dt[p.series] if len(p.series) else np.empty(0, np.uint8)
        f64, i64, strs = _columns(p, dtypes)
        n = p.meta.n
        batch = Batch(
            series=p.series,
            ts_ns=p.ts_ns,
            value_f64=f64,
            value_i64=i64,
            quality=p.quality if p.quality is not None else np.zeros(n, np.uint8),
            value_str=strs,
        )
        return GatewayFrame(
            p.meta.gateway_id, p.meta.seq, keys, batch, p.meta.created_ns, p.meta.session
        )


def sample_dtypes(
    table: SeriesTable,
    refused: Sequence[SeriesKey],
    series: NDArray[np.int32],
    declared: NDArray[np.int32] | None = None,
) -> NDArray[np.uint8]:
    """``FieldType`` per sample: from the table, from ``refused[declared]`` where a message
    declared a key the table refused, FLOAT for a sample without a series (-1)."""
    n = len(series)
    if n == 0:
        return np.empty(0, np.uint8)
    known = (series >= 0) & (series < len(table))
    out = np.where(known, table.dtypes[np.where(known, series, 0)], np.uint8(FieldType.FLOAT))
    out = out.astype(np.uint8)
    if refused and declared is not None:
        ref_dt = np.fromiter((int(k.dtype) for k in refused), np.uint8, len(refused))
        r = declared >= 0
        if r.any():
            out[r] = ref_dt[declared[r]]
    return out


class RefusedKeys:
    """Keys a table refused (the series is known with another type), numbered for the
    ``declared`` column of ``DecodedFrames``."""

    def __init__(self) -> None:
        self.keys: list[SeriesKey] = []
        self._index: dict[SeriesKey, int] = {}

    def index(self, table: SeriesTable, key: SeriesKey) -> tuple[int, int]:
        """(``table.add(key)``, -1), or (-1, i) when the table knows the series with another
        type: ``keys[i]`` is the declared key."""
        try:
            return table.add(key), -1
        except ValidationError:
            i = self._index.get(key)
            if i is None:
                i = self._index[key] = len(self.keys)
                self.keys.append(key)
            return -1, i


@dataclass(frozen=True, slots=True)
class DecodedFrames:
    """Many messages decoded into one ``Batch`` over a shared ``SeriesTable``.

    ``batch.series`` is a global index, or -1 for a sample without a series in the table. The
    explicit ``declared`` column (None: no such sample) names, per sample, the key its message
    declared when the table knows that series with another type: ``refused[declared[i]]``
    (reason ``type_change``, for the validator), -1 elsewhere.
    ``frame_index[i]`` is the position (in the ``decode_many`` input) of the message of sample
    ``i``.
    """

    table: SeriesTable
    batch: Batch
    frame_index: NDArray[np.int64]
    ok: list[int]  # input positions of decoded frames
    gateway_ids: list[str]  # per decoded frame
    seqs: list[int]  # per decoded frame
    errors: list[tuple[int, DecodeError]]  # input position, error
    refused: list[SeriesKey] = field(default_factory=list)
    created_ns: list[int] = field(default_factory=list)  # per decoded frame (0 if not sent)
    sessions: list[str] = field(default_factory=list)  # per decoded frame ("" if not sent)
    declared: NDArray[np.int32] | None = None


# a key block's mapping: global series (-1: refused), dtypes, declared index (None: none refused)
_KeyMap = tuple[NDArray[np.int32], NDArray[np.uint8], NDArray[np.int32] | None]


class FrameDecoder:
    """Decodes many frames into one batch over a growing global ``SeriesTable``.

    The local->global index mapping of a frame's key block is cached by the block's bytes, so a
    steady stream of frames from known gateways costs one dict lookup per frame for its keys.
    The cache is bounded by bytes (``max_cache_bytes``; an entry costs its block plus 13 bytes
    per key and 200 of overhead), as is the process-wide cache of decoded key blocks
    (``KEY_BLOCK_CACHE_BYTES``): frames with ever new key sets cost time, not memory. What does
    grow is the series table itself, by the distinct series ingest has seen.
    """

    def __init__(
        self, table: SeriesTable | None = None, *, max_cache_bytes: int = 32 * 1024 * 1024
    ) -> None:
        self.table = table if table is not None else SeriesTable()
        self._mapping: ByteLRU[bytes, _KeyMap] = ByteLRU(max_cache_bytes)
        self.refused = RefusedKeys()

    @property
    def cache_bytes(self) -> int:
        """Estimated bytes held by this decoder's cache and the shared key-block cache."""
        return self._mapping.bytes + _block_cache.bytes

    def _map_keys(self, block: bytes) -> _KeyMap:
        hit = self._mapping.get(block)
        if hit is not None:
            return hit
        keys, dtypes = _keys_of_block(block)
        pairs = [self.refused.index(self.table, k) for k in keys]
        glob = np.fromiter((g for g, _ in pairs), np.int32, len(keys))
        decl = np.fromiter((d for _, d in pairs), np.int32, len(keys))
        # the table only grows and never changes a type, so a mapping stays valid
        entry = (glob, dtypes, decl if (decl >= 0).any() else None)
        self._mapping.put(block, entry, len(block) + 17 * len(keys) + 200)
        return entry

    def decode_many(self, payloads: Sequence[bytes | bytearray | memoryview]) -> DecodedFrames:
        """Decode ``payloads``; broken ones land in ``errors`` and the rest proceed."""
        parts: list[Batch] = []
        frame_of: list[NDArray[np.int64]] = []
        ok: list[int] = []
        gws: list[str] = []
        seqs: list[int] = []
        created: list[int] = []
        sessions: list[str] = []
        errors: list[tuple[int, DecodeError]] = []
        declared: list[NDArray[np.int32] | None] = []
        for pos, payload in enumerate(payloads):
            try:
                p = _parse(payload)
                glob, key_dt, key_decl = self._map_keys(p.keys_block)
                _check_index(p.series, len(glob))
                n = p.meta.n
                dtypes = key_dt[p.series] if n else np.empty(0, np.uint8)
                f64, i64, strs = _columns(p, dtypes)
            except DecodeError as exc:
                errors.append((pos, exc))
                continue
            parts.append(
                Batch(
                    series=glob[p.series],
                    ts_ns=p.ts_ns,
                    value_f64=f64,
                    value_i64=i64,
                    quality=p.quality if p.quality is not None else np.zeros(n, np.uint8),
                    value_str=strs,
                )
            )
            frame_of.append(np.full(n, pos, np.int64))
            declared.append(key_decl[p.series] if key_decl is not None else None)
            ok.append(pos)
            gws.append(p.meta.gateway_id)
            seqs.append(p.meta.seq)
            created.append(p.meta.created_ns)
            sessions.append(p.meta.session)
        # ts_ns of a single frame stays a read-only view of its payload (no copy)
        batch = Batch.concat(parts)
        frame_index = np.concatenate(frame_of) if frame_of else np.empty(0, np.int64)
        decl: NDArray[np.int32] | None = None
        if any(d is not None for d in declared):
            decl = np.concatenate(
                [
                    d if d is not None else np.full(len(f), -1, np.int32)
                    for d, f in zip(declared, frame_of, strict=True)
                ]
            )
        return DecodedFrames(
            self.table,
            batch,
            frame_index,
            ok,
            gws,
            seqs,
            errors,
            list(self.refused.keys),
            created,
            sessions,
            decl,
        )


def decode_many(
    payloads: Sequence[bytes | bytearray | memoryview], table: SeriesTable | None = None
) -> tuple[SeriesTable, Batch]:
    """Many frames -> (global table, one batch). Raises the first ``DecodeError`` or type change."""
    decoded = FrameDecoder(table).decode_many(payloads)
    if decoded.errors:
        raise decoded.errors[0][1]
    if decoded.declared is not None and (decoded.declared >= 0).any():
        key = decoded.refused[int(decoded.declared[decoded.declared >= 0][0])]
        raise ValidationError(
            "type_change",
            f"series {key.measurement}.{key.field} changes type",
            detail=f"frame declares {key.dtype.name}",
        )
    return decoded.table, decoded.batch
