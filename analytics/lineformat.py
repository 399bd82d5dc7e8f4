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
) -> Batch:
    """One point per row (fields in sorted order, so each row encodes as one line); empty tag
    values are left out and NaN fields (not available) are skipped, not written."""
    names = sorted(fields)
    if not len(tags) or not names:
        return Batch.empty()
    series = np.array(
        [
            [
                table.add(
                    SeriesKey.make(
                        measurement, {k: v for k, v in t.items() if v}, n, FieldType.FLOAT
                    )
                )
                for n in names
            ]
            for t in tags
        ],
        dtype=np.int32,
    ).ravel()
    values = np.column_stack([np.asarray(fields[n], np.float64) for n in names]).ravel()
    ts = np.repeat(np.asarray(ts_ns, np.int64), len(names))
    keep = ~np.isnan(values)
    return Batch.build(table, series[keep], ts[keep], values[keep])
