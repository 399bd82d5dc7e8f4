"""Data-quality markers for every input: sample quality transitions -> ``data_quality`` points.

The rule is the gateway's OPC UA rule (docs/CONTRACTS.md "Data-quality markers"), applied here to
every accepted sample whatever its codec, so a Sparkplug node death (STALE), a per-tag JSON
``quality`` of 2 or a bad sample in a gateway frame reaches the KPI engine as NO_DATA:

* per series, only transitions are written: the code (1 uncertain, 2 bad, 3 stale) at the
  timestamp of the first sample with it, 0 at the first good sample after it;
* the state starts unknown, so the first sample of every series after ingest starts writes its
  marker (a restart never leaves a series marked bad);
* a good value re-sent after an outage with its old timestamp (not newer than the bad marker) is
  good again when it arrived (``arrival_ns``), as the gateway does with the server's time.

Markers are not marked themselves, nor the gateway's ``gateway_connection`` series. The state is per process: with N processes on one shared
subscription a signal's samples are spread over them, so exact markers need the signals
partitioned (``mqtt.frame_filter``), as exact counter increments do. Sparkplug births and deaths
reach every process, so Sparkplug outages are marked by all of them alike.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from zhizao.errors import ValidationError
from zhizao.model import Batch, FieldType, SeriesKey, SeriesTable
from zhizao.quality import Quality
from zhizao.schema import CONNECTION_MEASUREMENT, MEASUREMENT_TAG, QUALITY_MEASUREMENT

__all__ = ["QualityMarkers"]

_UNKNOWN = 255  # no marker written by this process yet
_NO_MARKER = -1  # a marker series itself (or a key a marker cannot be made for)


class QualityMarkers:
    """Per-series quality state over one growing ``SeriesTable``; vectorized per batch."""

    def __init__(self, table: SeriesTable, measurement: str = QUALITY_MEASUREMENT) -> None:
        self.table = table
        self.measurement = measurement
        self._marker = np.empty(0, np.int32)  # per table series: its marker series
        self._code = np.empty(0, np.uint8)
        self._ts_ns = np.empty(0, np.int64)
        self.written = 0

    def _grow(self) -> None:
        """Marker series for the series added to the table since the last call (one loop per
        new series, never per sample); adding a marker grows the table, which is covered."""
        while len(self._marker) < len(self.table):
            start = len(self._marker)
            keys = self.table.keys[start:]
            marks = np.full(len(keys), _NO_MARKER, np.int32)
            for i, key in enumerate(keys):
                if key.measurement in (self.measurement, CONNECTION_MEASUREMENT):
                    continue  # markers, and the gateway's session series, are not signals
                tags = {**key.tag_dict, MEASUREMENT_TAG: key.measurement}
                try:
                    marks[i] = self.table.add(
                        SeriesKey.make(self.measurement, tags, key.field, FieldType.INT)
                    )
                except ValidationError:
                    continue  # the marker's name is taken by a non-integer series: none
            self._marker = np.concatenate((self._marker, marks))
            self._code = np.concatenate((self._code, np.full(len(keys), _UNKNOWN, np.uint8)))
            self._ts_ns = np.concatenate((self._ts_ns, np.zeros(len(keys), np.int64)))

    def transitions(self, batch: Batch, arrival_ns: int) -> tuple[Batch, NDArray[np.int64]]:
        """The markers of ``batch`` (in arrival order per series) and, for each, the row of the
        sample that caused it."""
        if not len(batch):
            return Batch.empty(), np.empty(0, np.int64)
        self._grow()
        s_all = batch.series.astype(np.int64)
        # only series with a non-good sample here or a non-good (or unknown) state can change:
        # the steady all-good stream costs a few gathers, not a sort
        marked = self._marker[s_all] >= 0
        hot = marked & ((batch.quality != 0) | (self._code[s_all] != Quality.GOOD))
        if not hot.any():
            return Batch.empty(), np.empty(0, np.int64)
        hot_series = np.zeros(len(self._marker), np.bool_)
        hot_series[s_all[hot]] = True
        rows = np.flatnonzero(marked & hot_series[s_all])
        order = rows[np.argsort(s_all[rows], kind="stable")]
        s, t = s_all[order], batch.ts_ns[order]
        # any code above STALE is not a Quality: treat it as bad rather than lose it
        c = np.minimum(batch.quality[order], np.uint8(Quality.STALE))
        first = np.concatenate(([True], s[1:] != s[:-1]))
        prev = np.empty_like(c)
        prev[1:] = c[:-1]
        prev[first] = self._code[s[first]]
        ci = np.flatnonzero(c != prev)
        if not ci.size:
            return Batch.empty(), np.empty(0, np.int64)
        cs, ct, cc = s[ci], t[ci], c[ci]
        cfirst = np.concatenate(([True], cs[1:] != cs[:-1]))
        prev_ts = np.empty_like(ct)
        prev_ts[1:] = ct[:-1]
        prev_ts[cfirst] = self._ts_ns[cs[cfirst]]
        # a good value re-sent after an outage keeps its old timestamp: good when it arrived
        was_marked = np.empty_like(cfirst)
        was_marked[1:] = True
        was_marked[cfirst] = self._code[cs[cfirst]] != _UNKNOWN
        late_good = (cc == Quality.GOOD) & was_marked & (ct <= prev_ts)
        mts = np.where(late_good, np.maximum(np.int64(arrival_ns), prev_ts + 1), ct)
        clast = np.concatenate((cs[1:] != cs[:-1], [True]))
        self._code[cs[clast]] = cc[clast]
        self._ts_ns[cs[clast]] = mts[clast]
        n = len(ci)
        self.written += n
        markers = Batch(
            series=self._marker[cs],
            ts_ns=mts.astype(np.int64),
            value_f64=np.zeros(n, np.float64),
            value_i64=cc.astype(np.int64),
            quality=np.zeros(n, np.uint8),  # the marker itself is a good sample
        )
        return markers, order[ci].astype(np.int64)
