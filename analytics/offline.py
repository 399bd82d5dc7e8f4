"""``zhizao kpi compute``: the same KPIs from a CSV export, without any server.

CSV columns: ``timestamp`` (ISO 8601, naive = the site's local time; or integer epoch s/ms/ns),
``asset`` (ISA-95 path ``enterprise/site/area/line/machine``), ``signal`` and ``value``. The
signal is ``measurement.field`` (what ``zhizao export`` writes), a bare field name (its
measurement is the one the KPI configuration reads it from), ``meter:<meter id>`` for a meter
counter, or ``data_quality.<field>`` for the gateway's data-quality marker of a state signal.

The rows become the same series InfluxDB would return and go through the engine's own
``SiteReader.assemble``: an export and the database give identical components. Files saved by
Excel ("CSV UTF-8", with a byte-order mark) and GB18030 files are read. Rows that cannot be used
(a text value in a numeric signal, an unparsable timestamp, a short row, an unknown asset or
signal) are skipped and counted by reason in the notes; the rest is computed.
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np

from analytics.compute import SiteData
from analytics.config import KpiConfig
from analytics.reader import SiteReader
from analytics.sources import read_plan
from ingest.influx.reader import ResultSeries
from zhizao.errors import ConfigError, DecodeError
from zhizao.schema import ASSET_TAGS, MACHINE_TAG
from zhizao.site import SiteModel

__all__ = ["decode_text", "load_csv", "parse_time_ns"]

_HEADERS = {
    "timestamp": "timestamp", "time": "timestamp", "ts": "timestamp",
    "asset": "asset", "asset path": "asset", "asset_path": "asset", "path": "asset",
    "signal": "signal", "value": "value",
}  # fmt: skip
METER_PREFIX = "meter:"


def parse_time_ns(text: str, tz: ZoneInfo) -> int:
    t = text.strip()
    if t.lstrip("-").isdigit():
        v = int(t)
        # epoch in ns, ms or s, told apart by magnitude (2001..2286 for each)
        return v if abs(v) >= 10**17 else v * 1_000_000 if abs(v) >= 10**11 else v * 1_000_000_000
    dt = datetime.fromisoformat(t.replace("Z", "+00:00"))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=tz)
    dt = dt.astimezone(UTC)
    return int(dt.timestamp()) * 1_000_000_000 + dt.microsecond * 1000


def decode_text(raw: bytes) -> str:
    """UTF-8 with or without a byte-order mark, else GB18030 (what Chinese Excel saves)."""
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        try:
            return raw.decode("gb18030")
        except UnicodeDecodeError as exc:
            raise DecodeError(
                "encoding", "the file is neither UTF-8 nor GB18030 text; save it as CSV UTF-8"
            ) from exc


def _number(text: str) -> float | None:
    low = text.strip().lower()
    if low in ("true", "false"):
        return 1.0 if low == "true" else 0.0
    try:
        v = float(low)
    except ValueError:
        return None
    return v if np.isfinite(v) else None


def _state_value(text: str) -> object:
    # as InfluxDB returns it: an integer code stays an integer, anything else is text
    t = text.strip()
    try:
        return int(t)
    except ValueError:
        v = _number(t)
        return v if v is not None else t


class _Resolver:
    """Where an export row belongs: (measurement, tags, field, kind) as InfluxDB stores it."""

    def __init__(self, site: SiteModel, cfg: KpiConfig) -> None:
        self.site = site
        self.cfg = cfg
        self.plans = read_plan(site, cfg)
        self.machine_tags = {m: p.tags() for m, p in site.machine_paths().items()}
        self.by_path = {str(p): m for m, p in site.machine_paths().items()}
        self.meters = {m.id: m for m in site.meters}
        # field -> measurements it is read from, and whether it is text (states, product)
        self.measurements: dict[str, set[str]] = defaultdict(set)
        self.state_measurements: dict[str, set[str]] = defaultdict(set)
        self.text_fields: set[tuple[str, str]] = set()
        for plan in self.plans.values():
            for ref in plan.states:
                self.measurements[ref.field].add(ref.measurement)
                self.state_measurements[ref.field].add(ref.measurement)
                self.text_fields.add((ref.measurement, ref.field))
            for role, ref in plan.roles.items():
                self.measurements[ref.field].add(ref.measurement)
                if role == "product":
                    self.text_fields.add((ref.measurement, ref.field))
        for m in site.meters:
            self.measurements[m.signal].add(cfg.signals.measurement_of_meter(m.medium))

    def tags(self, asset: str) -> dict[str, str] | None:
        path = asset.strip().strip("/")
        machine = self.by_path.get(path)
        parts = [p for p in path.split("/") if p]
        if machine is None and len(parts) >= 3:
            # the site model may name machines with or without a cell: match on the machine id
            last = parts[-1]
            if last in self.machine_tags and self.machine_tags[last]["site"] in parts:
                machine = last
        if machine is not None:
            return dict(self.machine_tags[machine])
        if len(parts) < 2 or parts[0] != self.site.enterprise or parts[1] != self.site.site:
            return None
        tags = dict(zip(ASSET_TAGS, parts, strict=False))
        return None if MACHINE_TAG in tags else tags

    def signal(
        self, signal: str, tags: dict[str, str]
    ) -> tuple[str, dict[str, str], str, bool] | str:
        """(measurement, tags, field, is_text), or the reason the row is not used."""
        sig = signal.strip()
        if sig.startswith(METER_PREFIX):
            mid = sig[len(METER_PREFIX) :]
            meter = self.meters.get(mid)
            if meter is None:
                return f"unknown meter {mid!r}"
            meas = self.cfg.signals.measurement_of_meter(meter.medium)
            return meas, {**tags, self.cfg.signals.meter_tag or "meter": mid}, meter.signal, False
        dq = self.cfg.signals.data_quality
        if "." in sig:
            meas, field = sig.split(".", 1)
        else:
            found = self.measurements.get(sig, set())
            if len(found) != 1:
                return f"signal {sig!r} is not used by any KPI"
            meas, field = next(iter(found)), sig
        if dq is not None and meas == dq.measurement:
            owners = self.state_measurements.get(field, set())
            if len(owners) != 1:
                return f"data-quality marker of {field!r}, which is no state signal"
            return meas, {**tags, dq.signal_tag: next(iter(owners))}, field, False
        if field not in self.measurements or meas not in self.measurements[field]:
            return f"signal {sig!r} is not used by any KPI"
        return meas, tags, field, (meas, field) in self.text_fields


def load_csv(path: str | Path, site: SiteModel, cfg: KpiConfig) -> tuple[SiteData, list[str]]:
    """Raw signals of ``site`` from a CSV export, and notes on rows that were not used."""
    tz = ZoneInfo(site.timezone)
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read the samples file: {exc.strerror}", file=str(p)) from exc
    reader = csv.reader(io.StringIO(decode_text(raw), newline=""))
    header = next(reader, None)
    if header is None:
        raise DecodeError("empty", f"{p}: the samples file is empty")
    cols = [_HEADERS.get(h.strip().lower(), "") for h in header]
    missing = {"timestamp", "asset", "signal", "value"} - set(cols)
    if missing:
        raise DecodeError(
            "header", f"{p}: missing columns {sorted(missing)}", detail=f"header: {header}"
        )
    idx = {name: cols.index(name) for name in ("timestamp", "asset", "signal", "value")}
    width = max(idx.values()) + 1
    resolve = _Resolver(site, cfg)
    tag_cache: dict[str, dict[str, str] | None] = {}
    # (measurement, sorted tags, field) -> timestamps, values
    groups: dict[tuple[str, tuple[tuple[str, str], ...], str], tuple[list[int], list[object]]]
    groups = defaultdict(lambda: ([], []))
    skipped: dict[str, int] = defaultdict(int)
    first_line: dict[str, int] = {}

    def skip(reason: str) -> None:
        skipped[reason] += 1
        first_line.setdefault(reason, reader.line_num)

    for rec in reader:  # one row per sample: a CSV is parsed row by row, there is no other way
        if not rec or not any(c.strip() for c in rec):
            continue
        if len(rec) < width:
            skip("short row")
            continue
        try:
            ts = parse_time_ns(rec[idx["timestamp"]], tz)
        except ValueError:
            skip("unparsable timestamp")
            continue
        asset = rec[idx["asset"]]
        if asset not in tag_cache:
            tag_cache[asset] = resolve.tags(asset)
        tags = tag_cache[asset]
        if tags is None:
            skip(f"asset {asset.strip('/')!r} is not a machine of the site")
            continue
        where = resolve.signal(rec[idx["signal"]], tags)
        if isinstance(where, str):
            skip(where)
            continue
        meas, tags2, field, is_text = where
        text = rec[idx["value"]]
        value: object
        if is_text:
            value = _state_value(text)
        else:
            value = _number(text)
            if value is None:
                skip(f"text value in numeric signal {field!r}")
                continue
        g = groups[(meas, tuple(sorted(tags2.items())), field)]
        g[0].append(ts)
        g[1].append(value)

    series: list[ResultSeries] = []
    for (meas, tag_items, field), (ts_list, values) in groups.items():
        ts_arr = np.asarray(ts_list, np.int64)
        if all(isinstance(v, float) for v in values):
            col = np.asarray(values, np.float64)
        else:
            col = np.asarray(values, dtype=object)
        series.append(ResultSeries(meas, dict(tag_items), ["time", field], ts_arr, {field: col}))
    data = SiteReader(cfg).assemble(site, resolve.plans, series)
    notes = [
        f"{n} rows skipped: {reason} (first at line {first_line[reason]})"
        for reason, n in sorted(skipped.items())
    ]
    return data, notes
