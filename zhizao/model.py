"""Columnar samples: the ``Batch`` and the ``SeriesTable`` it indexes into.

A series is one measurement + tag set + field with one value type. A ``Batch`` holds many samples
of many series as equal-length numpy columns; everything hot works on whole columns, never on
per-sample Python objects.

Values live in three columns so that no type loses precision: ``value_f64`` for float samples,
``value_i64`` for integer and boolean samples (0/1), ``value_str`` (object array, or ``None`` when the
batch has no string series) for strings. Which column is meaningful for a sample follows from its
series' ``FieldType``; the other columns hold filler (0, or ``None``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import IntEnum

import numpy as np
from numpy.typing import NDArray

from zhizao.errors import ValidationError
from zhizao.quality import Quality

__all__ = ["Batch", "FieldType", "SeriesKey", "SeriesTable"]


class FieldType(IntEnum):
    """Value type of a series; maps to InfluxDB field types."""

    FLOAT = 0
    INT = 1
    BOOL = 2
    STRING = 3

    @classmethod
    def parse(cls, name: str) -> FieldType:
        aliases = {
            "float": cls.FLOAT,
            "double": cls.FLOAT,
            "f64": cls.FLOAT,
            "int": cls.INT,
            "integer": cls.INT,
            "i64": cls.INT,
            "bool": cls.BOOL,
            "boolean": cls.BOOL,
            "str": cls.STRING,
            "string": cls.STRING,
        }
        try:
            return aliases[name.lower()]
        except KeyError:
            raise ValueError(
                f"unknown field type {name!r}; expected one of float, int, bool, string"
            ) from None


@dataclass(frozen=True, slots=True)
class SeriesKey:
    """Identity of one series. Tags are kept sorted by key (InfluxDB's canonical order)."""

    measurement: str
    tags: tuple[tuple[str, str], ...]
    field: str
    dtype: FieldType = FieldType.FLOAT

    @classmethod
    def make(
        cls,
        measurement: str,
        tags: Mapping[str, str],
        field: str,
        dtype: FieldType = FieldType.FLOAT,
    ) -> SeriesKey:
        return cls(measurement, tuple(sorted(tags.items())), field, FieldType(dtype))

    @property
    def tag_dict(self) -> dict[str, str]:
        return dict(self.tags)

    def group_key(self) -> tuple[str, tuple[tuple[str, str], ...]]:
        """Measurement + tags: series sharing it can be written as fields of one point."""
        return (self.measurement, self.tags)


@dataclass(slots=True)
class SeriesTable:
    """Append-only table of series keys; ``Batch.series`` holds indices into it.

    A table only grows, so an index, once handed out, stays valid for the table's lifetime.
    """

    keys: list[SeriesKey] = field(default_factory=list)
    _index: dict[SeriesKey, int] = field(default_factory=dict, repr=False)
    # type of each (measurement, tags, field): one lookup refuses a type change
    _type_of_name: dict[tuple[str, tuple[tuple[str, str], ...], str], FieldType] = field(
        default_factory=dict, repr=False
    )
    # per-series columns with spare capacity (doubling): adding a series is amortized O(1);
    # np.append per series made building a table of n series O(n^2)
    _dtypes: NDArray[np.uint8] = field(
        default_factory=lambda: np.empty(64, dtype=np.uint8), repr=False
    )
    _groups: NDArray[np.int32] = field(
        default_factory=lambda: np.empty(64, dtype=np.int32), repr=False
    )
    _group_index: dict[tuple[str, tuple[tuple[str, str], ...]], int] = field(
        default_factory=dict, repr=False
    )

    @classmethod
    def of(cls, keys: Iterable[SeriesKey]) -> SeriesTable:
        table = cls()
        for key in keys:
            table.add(key)
        return table

    def __len__(self) -> int:
        return len(self.keys)

    def __getitem__(self, idx: int) -> SeriesKey:
        return self.keys[idx]

    def add(self, key: SeriesKey) -> int:
        """Index of ``key``, appending it if new. A known series with another type is refused."""
        idx = self._index.get(key)
        if idx is not None:
            return idx
        name = (key.measurement, key.tags, key.field)
        known_type = self._type_of_name.setdefault(name, key.dtype)
        if known_type is not key.dtype:
            raise ValidationError(
                "type_change",
                f"series {key.measurement}.{key.field} changes type",
                detail=f"known as {known_type.name}, now {key.dtype.name}",
            )
        idx = len(self.keys)
        if idx == len(self._dtypes):
            self._dtypes = np.concatenate((self._dtypes, np.empty(idx, np.uint8)))
            self._groups = np.concatenate((self._groups, np.empty(idx, np.int32)))
        self.keys.append(key)
        self._index[key] = idx
        self._dtypes[idx] = key.dtype
        group = self._group_index.setdefault(key.group_key(), len(self._group_index))
        self._groups[idx] = group
        return idx

    def find(self, key: SeriesKey) -> int | None:
        return self._index.get(key)

    @property
    def dtypes(self) -> NDArray[np.uint8]:
        """``FieldType`` of every series, indexable by a ``Batch.series`` column (a view: it does
        not follow series added later)."""
        return self._dtypes[: len(self.keys)]

    @property
    def groups(self) -> NDArray[np.int32]:
        """Point-group (measurement + tags) index of every series (a view, like ``dtypes``)."""
        return self._groups[: len(self.keys)]


def _as(arr: object, dtype: type[np.generic]) -> NDArray[np.generic]:
    return np.ascontiguousarray(np.asarray(arr), dtype=dtype)


@dataclass(frozen=True, slots=True)
class Batch:
    """Columnar samples; all arrays have the same length."""

    series: NDArray[np.int32]  # index into a SeriesTable
    ts_ns: NDArray[np.int64]  # source timestamp, UTC nanoseconds
    value_f64: NDArray[np.float64]
    value_i64: NDArray[np.int64]
    quality: NDArray[np.uint8]
    value_str: NDArray[np.object_] | None = None

    def __post_init__(self) -> None:
        n = len(self.series)
        cols: dict[str, NDArray[np.generic]] = {
            "ts_ns": self.ts_ns,
            "value_f64": self.value_f64,
            "value_i64": self.value_i64,
            "quality": self.quality,
        }
        if self.value_str is not None:
            cols["value_str"] = self.value_str
        for name, col in cols.items():
            if len(col) != n:
                raise ValueError(f"Batch column {name} has {len(col)} rows, series has {n}")

    def __len__(self) -> int:
        return len(self.series)

    @classmethod
    def empty(cls) -> Batch:
        return cls(
            series=np.empty(0, np.int32),
            ts_ns=np.empty(0, np.int64),
            value_f64=np.empty(0, np.float64),
            value_i64=np.empty(0, np.int64),
            quality=np.empty(0, np.uint8),
        )

    @classmethod
    def build(
        cls,
        table: SeriesTable,
        series: Sequence[int] | NDArray[np.integer],
        ts_ns: Sequence[int] | NDArray[np.integer],
        values: Sequence[object] | NDArray[np.generic],
        quality: Sequence[int] | NDArray[np.integer] | None = None,
    ) -> Batch:
        """Route one mixed value column into the typed columns by each series' type."""
        s = _as(series, np.int32).astype(np.int32, copy=False)
        n = len(s)
        if n and (s.min() < 0 or s.max() >= len(table)):
            raise ValueError("Batch.build: series index outside the series table")
        dtypes = table.dtypes[s] if n else np.empty(0, np.uint8)
        vals = np.asarray(values)
        f64 = np.zeros(n, np.float64)
        i64 = np.zeros(n, np.int64)
        strs: NDArray[np.object_] | None = None
        is_f = dtypes == FieldType.FLOAT
        is_i = (dtypes == FieldType.INT) | (dtypes == FieldType.BOOL)
        is_s = dtypes == FieldType.STRING
        if vals.dtype.kind in "fiub":
            f64[is_f] = vals[is_f]
            i64[is_i] = vals[is_i]
            if is_s.any():
                raise ValueError("Batch.build: string series given a numeric value column")
        else:
            obj = vals.astype(object)
            if is_f.any():
                f64[is_f] = obj[is_f].astype(np.float64)
            if is_i.any():
                i64[is_i] = obj[is_i].astype(np.int64)
            if is_s.any():
                strs = np.full(n, None, dtype=object)
                strs[is_s] = obj[is_s]
        q = (
            np.zeros(n, np.uint8)
            if quality is None
            else _as(quality, np.uint8).astype(np.uint8, copy=False)
        )
        return cls(
            series=s,
            ts_ns=_as(ts_ns, np.int64).astype(np.int64, copy=False),
            value_f64=f64,
            value_i64=i64,
            quality=q,
            value_str=strs,
        )

    def take(self, idx: NDArray[np.integer] | NDArray[np.bool_]) -> Batch:
        """Rows selected by an index or mask array (vectorized)."""
        return Batch(
            series=self.series[idx],
            ts_ns=self.ts_ns[idx],
            value_f64=self.value_f64[idx],
            value_i64=self.value_i64[idx],
            quality=self.quality[idx],
            value_str=None if self.value_str is None else self.value_str[idx],
        )

    @classmethod
    def concat(cls, batches: Sequence[Batch]) -> Batch:
        """One batch from many (series indices must refer to the same table)."""
        if not batches:
            return cls.empty()
        if len(batches) == 1:
            return batches[0]
        strs: NDArray[np.object_] | None = None
        if any(b.value_str is not None for b in batches):
            strs = np.concatenate(
                [
                    b.value_str if b.value_str is not None else np.full(len(b), None, object)
                    for b in batches
                ]
            )
        return cls(
            series=np.concatenate([b.series for b in batches]),
            ts_ns=np.concatenate([b.ts_ns for b in batches]),
            value_f64=np.concatenate([b.value_f64 for b in batches]),
            value_i64=np.concatenate([b.value_i64 for b in batches]),
            quality=np.concatenate([b.quality for b in batches]),
            value_str=strs,
        )

    def values_for(self, table: SeriesTable) -> NDArray[np.object_]:
        """Values as Python objects, typed per series. For tests and debugging, not hot paths."""
        out = np.empty(len(self), dtype=object)
        dt = table.dtypes[self.series] if len(self) else np.empty(0, np.uint8)
        is_f = dt == FieldType.FLOAT
        is_i = dt == FieldType.INT
        is_b = dt == FieldType.BOOL
        out[is_f] = self.value_f64[is_f].tolist()
        out[is_i] = self.value_i64[is_i].tolist()
        out[is_b] = (self.value_i64[is_b] != 0).tolist()
        if self.value_str is not None:
            is_s = dt == FieldType.STRING
            out[is_s] = self.value_str[is_s]
        return out


GOOD = np.uint8(Quality.GOOD)
