"""KPI component rows as a ``Batch``, written through the shared encoder and writer.

Rows are a few hundred per run, so building the series keys in Python is fine; what matters is that
KPI components go through the same line-protocol encoder (escaping, float formatting, rejection
rules) as every raw sample.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from numpy.typing import NDArray

from zhizao.model import Batch, FieldType, SeriesKey, SeriesTable

__all__ = ["component_batch"]


def component_batch(
    table: SeriesTable,
    measurement: str,
    tags: Sequence[Mapping[str, str]],
    ts_ns: NDArray[np.int64],
    fields: Mapping[str, NDArray[np.float64]],
    *,
    cache: dict[tuple[object, ...], NDArray[np.int32]] | None = None,
) -> Batch:
    """One point per row (fields in sorted order, so each row encodes as one line); empty tag
    values are left out and NaN fields (not available) are skipped, not written. ``cache``
    (kept by the caller with ``table``) remembers each row's series ids: an engine writing the
    same thousand machines every minute builds their keys once."""
    names = sorted(fields)
    if not len(tags) or not names:
        return Batch.empty()

    def ids(t: Mapping[str, str]) -> NDArray[np.int32]:
        clean = {k: v for k, v in t.items() if v}
        return np.array(
            [table.add(SeriesKey.make(measurement, clean, n, FieldType.FLOAT)) for n in names],
            np.int32,
        )

    if cache is None:
        rows = [ids(t) for t in tags]
    else:
        rows = []
        fixed = (measurement, *names)
        for t in tags:  # rows, not samples
            key = (*fixed, *sorted(t.items()))
            hit = cache.get(key)
            if hit is None:
                hit = cache[key] = ids(t)
            rows.append(hit)
    series = np.concatenate(rows)
    values = np.column_stack([np.asarray(fields[n], np.float64) for n in names]).ravel()
    ts = np.repeat(np.asarray(ts_ns, np.int64), len(names))
    keep = ~np.isnan(values)
    return Batch.build(table, series[keep], ts[keep], values[keep])
