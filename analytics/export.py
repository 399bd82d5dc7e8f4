"""``zhizao export``: a range of raw samples from InfluxDB as the CSV ``zhizao kpi compute`` reads.

Exactly what the KPI engine reads for the site (``SiteReader.statements``: the signals the KPIs
use, the value carried in from before the range, the plant and machine meters and the gateway's
data-quality markers of the state signals), one row per stored sample, so anyone can reproduce a
figure offline: ``timestamp`` (epoch nanoseconds, exact), ``asset`` (the ISA-95 path from the
point's tags), ``signal`` (``measurement.field``, ``meter:<id>`` or ``data_quality.<field>``) and
``value``.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Iterator
from typing import Any, TextIO

from analytics.config import KpiConfig
from analytics.reader import SiteReader
from ingest.influx import InfluxQLReader, ResultSeries
from zhizao.schema import ASSET_TAGS
from zhizao.site import SiteModel

__all__ = ["HEADER", "export_rows", "export_site", "write_csv"]

HEADER = ("timestamp", "asset", "signal", "value")


def _value(v: Any) -> str | None:
    if v is None:
        return None
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return None if math.isnan(v) else repr(v)
    return str(v)


def export_rows(
    series: Iterable[ResultSeries], cfg: KpiConfig, site: SiteModel
) -> Iterator[tuple[str, str, str, str]]:
    """CSV rows of stored series. The carried-in ``last()`` statements end before the range
    the others start at, so no sample comes twice."""
    signals = cfg.signals
    meter_measurements = {signals.measurement_of_meter(m.medium) for m in site.meters}
    dq = signals.data_quality.measurement if signals.data_quality is not None else None
    for s in series:
        asset = "/".join(s.tags[k] for k in ASSET_TAGS if s.tags.get(k))
        meter = s.tags.get(signals.meter_tag) if signals.meter_tag else None
        for field, col in s.values.items():
            if s.name == dq:
                signal = f"{dq}.{field}"
            elif s.name in meter_measurements and meter:
                signal = f"meter:{meter}"
            else:
                signal = f"{s.name}.{field}"
            for t, v in zip(s.time_ns.tolist(), col.tolist(), strict=True):
                text = _value(v)
                if text is not None:
                    yield str(t), asset, signal, text


def write_csv(rows: Iterable[tuple[str, str, str, str]], out: TextIO) -> int:
    w = csv.writer(out, lineterminator="\n")
    w.writerow(HEADER)
    n = 0
    for row in rows:
        w.writerow(row)
        n += 1
    return n


async def export_site(cfg: KpiConfig, site: SiteModel, lo_ns: int, hi_ns: int, out: TextIO) -> int:
    """Write the raw samples of ``site`` in [lo, hi) to ``out``; returns the number of rows."""
    assert cfg.influx is not None, "checked by the caller"
    _, statements = SiteReader(cfg).statements(site, lo_ns, hi_ns)
    if not statements:
        return write_csv((), out)
    async with InfluxQLReader(cfg.influx) as reader:
        series = await reader.query(";".join(statements), chunked=True, chunk_size=10_000)
    return write_csv(export_rows(series, cfg, site), out)
