"""``zhizao kpi compute``: the same KPIs from a CSV export, without any server.

CSV columns: ``timestamp`` (ISO 8601, naive = the site's local time; or integer epoch s/ms/ns),
``asset`` (ISA-95 path ``enterprise/site/area/line/machine``), ``signal`` (field name, or
``measurement.field``, or ``meter:<meter id>`` for a meter counter) and ``value``.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np

from analytics.compute import SiteData
from analytics.config import KpiConfig
from analytics.machine import MachineSignals, Signal
from analytics.sources import read_plan
from zhizao.errors import ConfigError, DecodeError
from zhizao.site import SiteModel

__all__ = ["load_csv", "parse_time_ns"]

_HEADERS = {
    "timestamp": "timestamp", "time": "timestamp", "ts": "timestamp",
    "asset": "asset", "asset path": "asset", "asset_path": "asset", "path": "asset",
    "signal": "signal", "value": "value",
}  # fmt: skip


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


def _value(text: str) -> float | str:
    try:
        return float(text)
    except ValueError:
        low = text.strip().lower()
        if low in ("true", "false"):
            return 1.0 if low == "true" else 0.0
        return text


def load_csv(path: str | Path, site: SiteModel, cfg: KpiConfig) -> tuple[SiteData, list[str]]:
    """Raw signals of ``site`` from a CSV export, and notes on rows that were not used."""
    tz = ZoneInfo(site.timezone)
    plans = read_plan(site, cfg)
    paths = {str(p): mid for mid, p in site.machine_paths().items()}
    # the site model may name machines with or without a cell; match on the machine id too
    by_id = {p.split("/")[-1]: mid for p, mid in paths.items()}
    meters = {m.id: m for m in site.meters}
    rows: dict[tuple[str, str], tuple[list[int], list[float | str]]] = defaultdict(lambda: ([], []))
    notes: list[str] = []
    skipped: dict[str, int] = defaultdict(int)
    p = Path(path)
    try:
        handle = p.open(newline="", encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read the samples file: {exc.strerror}", file=str(p)) from exc
    with handle:
        reader = csv.reader(handle)
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
        for line_no, rec in enumerate(reader, start=2):
            if not rec:
                continue
            try:
                ts = parse_time_ns(rec[idx["timestamp"]], tz)
                asset, signal, value = (
                    rec[idx["asset"]].strip("/"),
                    rec[idx["signal"]],
                    rec[idx["value"]],
                )
            except (ValueError, IndexError) as exc:
                skipped[f"line {line_no}: {exc}"[:80]] += 1
                continue
            signal = (
                signal.split(".", 1)[1]
                if "." in signal and not signal.startswith("meter:")
                else signal
            )
            rows[(asset, signal)][0].append(ts)
            rows[(asset, signal)][1].append(_value(value))

    data = SiteData()
    roles_of: dict[str, dict[str, Signal]] = defaultdict(dict)
    states_of: dict[str, dict[str, Signal]] = defaultdict(dict)
    for (asset, signal), (ts_list, values) in rows.items():
        t = np.asarray(ts_list, np.int64)
        if signal.startswith("meter:"):
            mid = signal.split(":", 1)[1]
            if mid not in meters:
                skipped[f"unknown meter {mid!r}"] += len(t)
                continue
            data.meters[mid] = Signal(t, np.asarray(values, np.float64))
            continue
        machine = paths.get(asset) or by_id.get(asset.split("/")[-1])
        if machine is None:
            site_meter = [m for m in site.meters if m.signal == signal and not m.asset]
            if len(site_meter) == 1:
                data.meters[site_meter[0].id] = Signal(t, np.asarray(values, np.float64))
            else:
                skipped[f"asset {asset!r} is not a machine of the site"] += len(t)
            continue
        plan = plans[machine]
        roles = {ref.field: role for role, ref in plan.roles.items()}
        if signal in {s.field for s in plan.states}:
            states_of[machine][signal] = Signal(t, np.asarray(values, dtype=object))
        elif signal in roles:
            role = roles[signal]
            arr = (
                np.asarray(values, dtype=object)
                if role == "product"
                else np.asarray(values, np.float64)
            )
            roles_of[machine][role] = Signal(t, arr)
        elif plan.energy_meter is not None and signal == plan.energy_meter.signal:
            roles_of[machine]["energy_kwh"] = Signal(t, np.asarray(values, np.float64))
        else:
            skipped[f"signal {signal!r} is not used by any KPI"] += len(t)
    for machine in set(roles_of) | set(states_of):
        data.machines[machine] = MachineSignals(
            roles_of.get(machine, {}), states_of.get(machine, {})
        )
    notes += [f"{n} rows skipped: {reason}" for reason, n in sorted(skipped.items())]
    return data, notes
