"""Grafana dashboards generated from the KPI catalog, the schema module and a site model.

    .venv/bin/zhizao sim site > /tmp/site.yaml
    .venv/bin/python -m dashboards.generate --site /tmp/site.yaml            # writes generated/
    .venv/bin/python -m dashboards.generate --site /tmp/site.yaml --check    # exit 1 if stale

Every ratio comes from ``analytics.catalog.influxql_expression`` (``sum(num) / sum(den)`` over
the stored ``kpi_*`` components); measurement, tag and field names come from ``zhizao.schema``;
state names and value mappings from the site model's machine types (``StateClassifier``); the
time zone of every ``GROUP BY time(1d)`` from the site. The output is classic dashboard JSON
(``schemaVersion`` 42) with fixed datasource uids that ``provisioning/datasources`` defines.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from analytics.catalog import KPIS, SITE_KPIS, influxql_expression
from analytics.catalog import get as catalog_get
from analytics.config import EnergyConfig
from analytics.green import CoefficientLibrary
from analytics.states import StateClassifier
from zhizao import schema
from zhizao.influxql import ident, literal, tz
from zhizao.site import MachineState, MachineTypeConfig, SiteModel, load_site

__all__ = [
    "API_DS",
    "API_SITE_DS",
    "DASHBOARD_FILES",
    "INFLUX_DS",
    "OUT_DIR",
    "PROMETHEUS_DS",
    "SCHEMA_VERSION",
    "Generated",
    "generate",
    "main",
    "write",
]

SCHEMA_VERSION = 42
INFLUX_DS: dict[str, str] = {"type": "influxdb", "uid": "zhizao-influxdb"}
PROMETHEUS_DS: dict[str, str] = {"type": "prometheus", "uid": "zhizao-victoriametrics"}
# the API as a JSON datasource (Grafana's Infinity plugin): the commission's figures come from
# factory reports in the API's database, and the API enforces the commission token's scope
API_DS: dict[str, str] = {"type": "yesoreyeram-infinity-datasource", "uid": "zhizao-api"}
# the same API with a site's engineer token, for what lives in the API's database (stop reasons)
API_SITE_DS: dict[str, str] = {"type": "yesoreyeram-infinity-datasource", "uid": "zhizao-api-site"}
COMMISSION_API = "/api/v1/commission"
OUT_DIR = Path(__file__).resolve().parent / "generated"
DASHBOARD_FILES = {
    "zhizao-line-live": "line-live.json",
    "zhizao-shift-report": "shift-report.json",
    "zhizao-green-factory": "green-factory.json",
    "zhizao-health": "health.json",
    "zhizao-commission": "commission.json",
}

# units Grafana knows for the catalog's units (custom "suffix:" units where Grafana has none)
_UNITS = {
    "ratio": "percentunit",
    "s": "s",
    "kWh": "kwatth",
    "kgce": "suffix: kgce",
    "kgCO2": "suffix: kgCO2",
    "kgce/10k CNY": "suffix: kgce/10k CNY",
    "kgCO2/10k CNY": "suffix: kgCO2/10k CNY",
    "m3": "suffix: m³",
    "m3/10k CNY": "suffix: m³/10k CNY",
    "items": "none",
    "1/h": "suffix: /h",
}
_STATE_COLORS = {
    MachineState.IN_CYCLE: "green",
    MachineState.SETUP: "blue",
    MachineState.DELAY: "red",
    MachineState.IDLE: "yellow",
    MachineState.PLANNED_DOWN: "text",
    MachineState.NO_DATA: "purple",
}
# the asset filter every machine-level query carries (multi-value variables become regexes)
ASSET_FILTER = " AND ".join(
    f"{ident(tag)} =~ /^${tag}$/"
    for tag in (schema.SITE_TAG, schema.AREA_TAG, schema.LINE_TAG, schema.MACHINE_TAG)
)
SITE_FILTER = f"{ident(schema.SITE_TAG)} =~ /^$site$/"
HOUR = schema.kpi_machine_measurement("hour")
SHIFT = schema.kpi_machine_measurement("shift")
DAY = schema.kpi_machine_measurement("day")
SITE_DAY = schema.kpi_site_measurement("day")


def unit_of(kpi_id: str) -> str:
    return _UNITS[catalog_get(kpi_id).unit]


def kpi(kpi_id: str, alias: str | None = None) -> str:
    """``<catalog expression> AS "alias"``: the only way a ratio enters a query."""
    return f"{influxql_expression(kpi_id)} AS {ident(alias or kpi_id)}"


def total(component: str, alias: str | None = None) -> str:
    """``sum("component") AS "alias"`` (a stored component, summed: no ratio)."""
    if component not in (*schema.COMPONENT_FIELDS, *schema.SITE_COMPONENT_FIELDS):
        raise ValueError(f"unknown KPI component {component!r}")
    return f"sum({ident(component)}) AS {ident(alias or component)}"


def select(
    columns: Iterable[str],
    measurement: str,
    *,
    where: str = ASSET_FILTER,
    extra: Sequence[str] = (),
    time_group: str | None = None,
    tags: Sequence[str] = (),
    fill: str | None = "none",
    zone: str | None = None,
) -> str:
    """``SELECT .. FROM .. WHERE $timeFilter AND <assets> [GROUP BY time(..), tags fill() tz()]``.
    A group by one day or more must name the site's time zone (a day is local, DOMAIN rule 3)."""
    q = f"SELECT {', '.join(columns)} FROM {ident(measurement)} WHERE $timeFilter"
    for cond in (where, *extra):
        if cond:
            q += f" AND {cond}"
    groups = ([f"time({time_group})"] if time_group else []) + [ident(t) for t in tags]
    if groups:
        q += " GROUP BY " + ", ".join(groups)
    if time_group and fill:
        q += f" fill({fill})"
    # $__interval can grow to days on a long range, so it is aligned like a fixed day
    if time_group and (time_group[-1] in "dw" or time_group.startswith("$")):
        if not zone:
            raise ValueError(f"GROUP BY time({time_group}) needs the site's time zone")
        q += " " + tz(zone)
    return q


@dataclass
class _Board:
    """One dashboard being built: panels in grid order with unique ids."""

    uid: str
    title: str
    description: str
    zone: str
    time_from: str
    refresh: str
    variables: list[dict[str, Any]]
    tags: list[str]
    panels: list[dict[str, Any]] = field(default_factory=list)
    may_be_empty: dict[int, str] = field(default_factory=dict)
    _x: int = 0
    _y: int = 0
    _row_h: int = 0

    def row(self, title: str) -> None:
        self._newline()
        self.panels.append(
            {
                "id": len(self.panels) + 1,
                "type": "row",
                "title": title,
                "collapsed": False,
                "gridPos": {"h": 1, "w": 24, "x": 0, "y": self._y},
                "panels": [],
            }
        )
        self._y += 1

    def _newline(self) -> None:
        if self._x:
            self._y += self._row_h
            self._x, self._row_h = 0, 0

    def add(self, panel: dict[str, Any], w: int, h: int, *, may_be_empty: str = "") -> None:
        if self._x + w > 24:
            self._newline()
        pid = len(self.panels) + 1
        panel = {"id": pid, **panel, "gridPos": {"h": h, "w": w, "x": self._x, "y": self._y}}
        self.panels.append(panel)
        if may_be_empty:
            self.may_be_empty[pid] = may_be_empty
        self._x += w
        self._row_h = max(self._row_h, h)

    def json(self) -> dict[str, Any]:
        return {
            "uid": self.uid,
            "title": self.title,
            "description": self.description,
            "tags": ["zhizao", *self.tags],
            "schemaVersion": SCHEMA_VERSION,
            "version": 1,
            "editable": True,
            "graphTooltip": 1,
            "timezone": self.zone,
            "weekStart": "monday",
            "time": {"from": self.time_from, "to": "now"},
            "refresh": self.refresh,
            "fiscalYearStartMonth": 0,
            "liveNow": False,
            "annotations": {"list": []},
            "links": [
                {
                    "title": "zhizao dashboards",
                    "type": "dashboards",
                    "tags": ["zhizao"],
                    "asDropdown": True,
                    "includeVars": True,
                    "keepTime": True,
                }
            ],
            "templating": {"list": self.variables},
            "panels": self.panels,
        }


# -- panel builders ------------------------------------------------------------------------------


def influx_target(ref: str, query: str, fmt: str = "time_series") -> dict[str, Any]:
    return {
        "refId": ref,
        "datasource": INFLUX_DS,
        "rawQuery": True,
        "query": query,
        "resultFormat": fmt,
    }


def prom_target(ref: str, expr: str, legend: str) -> dict[str, Any]:
    return {
        "refId": ref,
        "datasource": PROMETHEUS_DS,
        "expr": expr,
        "legendFormat": legend,
        "range": True,
        "instant": False,
        "editorMode": "code",
    }


def _panel(
    kind: str,
    title: str,
    description: str,
    targets: list[dict[str, Any]],
    *,
    unit: str = "none",
    decimals: int | None = None,
    options: dict[str, Any] | None = None,
    custom: dict[str, Any] | None = None,
    mappings: list[dict[str, Any]] | None = None,
    overrides: list[dict[str, Any]] | None = None,
    transformations: list[dict[str, Any]] | None = None,
    display_name: str | None = None,
    interval: str | None = None,
) -> dict[str, Any]:
    defaults: dict[str, Any] = {"unit": unit, "mappings": mappings or []}
    if decimals is not None:
        defaults["decimals"] = decimals
    if custom:
        defaults["custom"] = custom
    if display_name:
        defaults["displayName"] = display_name
    ds = targets[0]["datasource"] if targets else INFLUX_DS
    p: dict[str, Any] = {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": ds,
        "targets": targets,
        "fieldConfig": {"defaults": defaults, "overrides": overrides or []},
        "options": options or {},
    }
    if transformations:
        p["transformations"] = transformations
    if interval:
        p["interval"] = interval
    return p


def _reduce_options(calc: str = "lastNotNull", fields: str = "") -> dict[str, Any]:
    return {"calcs": [calc], "fields": fields, "values": False}


def stat(
    title: str,
    description: str,
    targets: list[dict[str, Any]],
    *,
    unit: str,
    decimals: int | None = None,
    calc: str = "lastNotNull",
    fields: str = "",
    mappings: list[dict[str, Any]] | None = None,
    overrides: list[dict[str, Any]] | None = None,
    display_name: str | None = None,
) -> dict[str, Any]:
    """A stat over the whole range: its queries have no GROUP BY time (one bucket), so the value
    shown is the range's value, not the last bucket's."""
    return _panel(
        "stat",
        title,
        description,
        targets,
        unit=unit,
        decimals=decimals,
        mappings=mappings,
        overrides=overrides,
        display_name=display_name,
        options={
            "reduceOptions": _reduce_options(calc, fields),
            "colorMode": "value",
            "graphMode": "none",
            "textMode": "value_and_name",
            "justifyMode": "auto",
            "orientation": "auto",
            "wideLayout": True,
            "showPercentChange": False,
        },
    )


def timeseries(
    title: str,
    description: str,
    targets: list[dict[str, Any]],
    *,
    unit: str,
    bars: bool = False,
    stack: bool = False,
    overrides: list[dict[str, Any]] | None = None,
    display_name: str | None = None,
    transformations: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    custom: dict[str, Any] = {
        "drawStyle": "bars" if bars else "line",
        "lineWidth": 1,
        "fillOpacity": 80 if bars else 10,
        "spanNulls": False,
        "showPoints": "auto",
        "stacking": {"mode": "normal" if stack else "none", "group": "A"},
        "barAlignment": -1,  # bars start at the window start (rows are stamped with it)
    }
    return _panel(
        "timeseries",
        title,
        description,
        targets,
        unit=unit,
        custom=custom,
        overrides=overrides,
        display_name=display_name,
        transformations=transformations,
        options={
            "legend": {"displayMode": "table", "placement": "bottom", "calcs": ["sum"]},
            "tooltip": {"mode": "multi", "sort": "none"},
        },
    )


# -- variables -----------------------------------------------------------------------------------


def _influx_variable(name: str, label: str, query: str, *, multi: bool) -> dict[str, Any]:
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": INFLUX_DS,
        "query": query,
        "definition": query,
        "refresh": 1,  # on dashboard load
        "sort": 1,
        "multi": multi,
        "includeAll": multi,
        "current": {},
        "options": [],
        "hide": 0,
    }


def asset_variables(
    levels: Sequence[str] = ("site", "area", "line", "machine"),
) -> list[dict[str, Any]]:
    """``$site`` -> ``$area`` -> ``$line`` -> ``$machine``, each ``SHOW TAG VALUES`` restricted by
    its parents (``WHERE "site" =~ /^$site$/ ...``)."""
    out: list[dict[str, Any]] = []
    parents: list[str] = []
    for level in levels:
        q = f"SHOW TAG VALUES FROM {ident(HOUR)} WITH KEY = {ident(level)}"
        if parents:
            q += " WHERE " + " AND ".join(f"{ident(p)} =~ /^${p}$/" for p in parents)
        out.append(_influx_variable(level, level, q, multi=level != "site"))
        parents.append(level)
    return out


# -- state mappings from the site model ----------------------------------------------------------


def primary_state_signal(mtype: MachineTypeConfig) -> str:
    """The state signal of a machine type that the most state-map keys name (the one a state
    timeline shows; the engine combines all of them, most restrictive first)."""
    mapping = StateClassifier.for_type(mtype).mapping
    best, best_n = "", -1
    for sig in mtype.signals:
        if sig.kind != "state":
            continue
        n = sum(1 for k in mapping if k.startswith(f"{sig.name}="))
        if sig.dtype == "string":
            n = max(n, sum(1 for k in mapping if "=" not in k))
        if n > best_n:
            best, best_n = sig.name, n
    if not best:
        raise ValueError(f"machine type without a state signal: {mtype.description!r}")
    return best


def state_mappings(mtype: MachineTypeConfig, signal: str) -> list[dict[str, Any]]:
    """Grafana value mappings: source code of ``signal`` -> platform state (text and colour)."""
    mapping = StateClassifier.for_type(mtype).mapping
    dtype = next(s.dtype for s in mtype.signals if s.name == signal)
    options: dict[str, dict[str, Any]] = {}
    for key, state in mapping.items():
        code = key.split("=", 1)[1] if key.startswith(f"{signal}=") else key
        if "=" in key and not key.startswith(f"{signal}="):
            continue
        if "=" not in key and dtype != "string":
            continue
        options[code] = {"text": state.value, "color": _STATE_COLORS[state]}
    for i, code in enumerate(sorted(options)):
        options[code]["index"] = i
    return [{"type": "value", "options": dict(sorted(options.items()))}]


_QUALITY_MAPPINGS = [
    {
        "type": "value",
        "options": {
            "0": {"text": "data good", "color": "transparent", "index": 0},
            "1": {"text": "uncertain", "color": "orange", "index": 1},
            "2": {"text": "NO_DATA (bad)", "color": "purple", "index": 2},
            "3": {"text": "NO_DATA (stale)", "color": "purple", "index": 3},
        },
    }
]


def _ref(i: int) -> str:
    return chr(ord("A") + i)


# -- the dashboards ------------------------------------------------------------------------------


def _definition_text(ids: Iterable[str]) -> str:
    return "; ".join(f"{KPIS[i].label}: {KPIS[i].definition}" for i in ids)


def line_live(site: SiteModel) -> _Board:
    zone = site.timezone
    b = _Board(
        "zhizao-line-live",
        "Line live",
        "What a line is doing now and how it did over the chosen range. Every ratio is "
        "sum(numerator) / sum(denominator) over the KPI engine's components (analytics.catalog).",
        zone,
        "now/d",
        "30s",
        asset_variables(),
        ["line", "oee"],
    )
    types = sorted({m.type for _, _, m in site.machines()})
    state_targets: list[dict[str, Any]] = []
    state_overrides: list[dict[str, Any]] = []
    current_targets: list[dict[str, Any]] = []
    current_overrides: list[dict[str, Any]] = []
    since_targets: list[dict[str, Any]] = []
    for i, tname in enumerate(types):
        mtype = site.machine_types[tname]
        sig = primary_state_signal(mtype)
        ref = _ref(i)
        state_targets.append(
            influx_target(
                ref,
                select(
                    [f'last({ident(sig)}) AS "state"'],
                    schema.MACHINE_STATE,
                    time_group="$__interval",
                    zone=zone,
                    tags=[schema.MACHINE_TAG],
                    fill="none",
                ),
            )
        )
        current_targets.append(
            influx_target(
                ref,
                select(
                    [f'last({ident(sig)}) AS "state"'],
                    schema.MACHINE_STATE,
                    tags=[schema.MACHINE_TAG],
                ),
            )
        )
        since_targets.append(
            influx_target(
                ref,
                select(
                    [f'last({ident(sig)}) AS "state"'],
                    schema.MACHINE_STATE,
                    tags=[schema.MACHINE_TAG],
                ),
            )
        )
        override = {
            "matcher": {"id": "byFrameRefID", "options": ref},
            "properties": [{"id": "mappings", "value": state_mappings(mtype, sig)}],
        }
        state_overrides.append(override)
        current_overrides.append(override)
        # NO_DATA made visible: the gateway's data-quality markers of the same signal
        qref = _ref(len(types) + i)
        state_targets.append(
            influx_target(
                qref,
                select(
                    [f'max({ident(sig)}) AS "data quality"'],
                    schema.QUALITY_MEASUREMENT,
                    extra=[f"{ident(schema.MEASUREMENT_TAG)} = {literal(schema.MACHINE_STATE)}"],
                    time_group="$__interval",
                    zone=zone,
                    tags=[schema.MACHINE_TAG],
                    fill="none",
                ),
            )
        )
        state_overrides.append(
            {
                "matcher": {"id": "byFrameRefID", "options": qref},
                "properties": [
                    {"id": "mappings", "value": _QUALITY_MAPPINGS},
                    {"id": "displayName", "value": "${__field.labels.machine} data"},
                ],
            }
        )
    b.row("State")
    b.add(
        _panel(
            "state-timeline",
            "Machine state",
            "The primary state signal of each machine type, mapped to the platform state by the "
            "site model's state map (the KPI engine also combines the other state signals, most "
            "restrictive first), and below it the gateway's data-quality marker: NO_DATA where a "
            "signal was bad or stale (counted as ADET, never as running). The last value per "
            "$__interval bucket with a change (a state lasts until the next one; states shorter "
            "than a bucket are not drawn); the times in the KPIs are exact.",
            state_targets,
            overrides=state_overrides,
            display_name="${__field.labels.machine}",
            options={
                "showValue": "never",
                "mergeValues": True,
                "alignValue": "left",
                "rowHeight": 0.8,
                "legend": {"showLegend": True, "displayMode": "list", "placement": "bottom"},
                "tooltip": {"mode": "single", "sort": "none"},
            },
            custom={"fillOpacity": 80, "lineWidth": 0},
        ),
        24,
        8,
    )
    b.add(
        stat(
            "Current state",
            "The newest value of the primary state signal in the range, mapped to the platform state.",
            current_targets,
            unit="none",
            overrides=current_overrides,
            display_name="${__field.labels.machine}",
        ),
        12,
        4,
    )
    b.add(
        stat(
            "Time since the last state change",
            "Time of the newest state sample (the gateway publishes states on change).",
            since_targets,
            unit="dateTimeFromNow",
            fields="/^Time$/",
            display_name="${__field.labels.machine}",
        ),
        12,
        4,
    )
    b.row("OEE (ISO 22400) over the range")
    oee_ids = ("oee", "availability", "effectiveness", "quality", "quality_pri_weighted")
    b.add(
        stat(
            "OEE and its factors",
            "Over the whole range, one bucket, sum over sum of the machines' hourly components "
            "(rows are included by their window start). " + _definition_text(oee_ids) + ". "
            "Effectiveness is not capped. OEE = A x E x Q with Q = PRI*GQ/PRI*PQ.",
            [influx_target("A", select([kpi(i) for i in oee_ids], HOUR))],
            unit="percentunit",
            decimals=1,
        ),
        12,
        5,
    )
    comps = (("pbt_s", "PBT"), ("apt_s", "APT"), ("aust_s", "AUST"), ("adet_s", "ADET"),
             ("adot_s", "ADOT"), ("pri_pq_s", "PRI x PQ"), ("pri_gq_s", "PRI x GQ"))  # fmt: skip
    counts = (("pq", "PQ"), ("gq", "GQ"), ("sq", "SQ"), ("rq", "RQ"))
    b.add(
        stat(
            "Times",
            "Summed ISO 22400 time elements: PBT = APT + AUST + ADET + ADOT.",
            [influx_target("A", select([total(c, a) for c, a in comps], HOUR))],
            unit="s",
        ),
        7,
        5,
    )
    b.add(
        stat(
            "Counts",
            "Produced, good (first pass), scrap and rework quantities.",
            [influx_target("A", select([total(c, a) for c, a in counts], HOUR))],
            unit="none",
            decimals=0,
        ),
        5,
        5,
    )
    b.add(
        timeseries(
            "OEE hour by hour",
            "Each hour's value from that hour's components (sum over sum over the selected machines).",
            [influx_target("A", select([kpi(i) for i in oee_ids[:4]], HOUR, time_group="1h"))],
            unit="percentunit",
        ),
        12,
        8,
    )
    b.add(
        timeseries(
            "Time by platform state, hour by hour",
            "Seconds of planned busy time per state (DELAY excludes NO_DATA), and planned down.",
            [
                influx_target(
                    "A",
                    select(
                        [
                            'sum("apt_s") AS "IN_CYCLE"',
                            'sum("aust_s") AS "SETUP"',
                            'sum("adet_s") - sum("adet_no_data_s") AS "DELAY"',
                            'sum("adet_no_data_s") AS "NO_DATA"',
                            'sum("adot_s") AS "IDLE"',
                            'sum("planned_down_s") AS "PLANNED_DOWN"',
                        ],
                        HOUR,
                        time_group="1h",
                    ),
                )
            ],
            unit="s",
            bars=True,
            stack=True,
            overrides=[
                {
                    "matcher": {"id": "byName", "options": s.value},
                    "properties": [{"id": "color", "value": {"mode": "fixed", "fixedColor": c}}],
                }
                for s, c in _STATE_COLORS.items()
            ],
        ),
        12,
        8,
    )
    b.row("Parts and losses")
    b.add(
        timeseries(
            "Parts vs target, hour by hour",
            "Produced parts per machine and hour, and the target (ideal quantity in the planned "
            "busy time, PBT/PRI of the product in force). The target is null, not invented, "
            "where the machine had no planned busy time or no known product in that hour.",
            [
                influx_target(
                    "A",
                    select(
                        [total("pq", "parts"), total("gq", "good")],
                        HOUR,
                        time_group="1h",
                        tags=[schema.MACHINE_TAG],
                    ),
                ),
                influx_target(
                    "B",
                    select(
                        [f'{influxql_expression("target_q")} AS "target"'],
                        HOUR,
                        extra=['"pbt_s" > 0', '"pbt_no_product_s" = 0'],
                        time_group="1h",
                        tags=[schema.MACHINE_TAG],
                    ),
                ),
            ],
            unit="none",
            bars=True,
            display_name="${__field.labels.machine} ${__field.name}",
        ),
        12,
        8,
    )
    loss_ids = ("breakdown_s", "setup_adjustment_s", "idling_minor_stops_s", "reduced_speed_s",
                "process_defects_s", "startup_yield_s", "idle_no_order_s", "no_data_s")  # fmt: skip
    b.add(
        _panel(
            "bargauge",
            "Losses (six big losses) over the range",
            "Seconds lost, Nakajima view; with PRI x GQ they add up to PBT. "
            + _definition_text(loss_ids)
            + ". Losses by assigned stop reason: the next panel.",
            [influx_target("A", select([kpi(i, KPIS[i].label) for i in loss_ids], HOUR))],
            unit="s",
            options={
                "reduceOptions": _reduce_options(),
                "orientation": "horizontal",
                "displayMode": "basic",
                "showUnfilled": True,
                "valueMode": "color",
                "namePlacement": "left",
                "sizing": "auto",
            },
        ),
        12,
        8,
    )
    b.add(
        _api_table(
            "Top loss reasons (assigned stops)",
            "Downtime of the chosen machines' stops by the reason operators assigned (the API's "
            "stop reasons; time no reason covers is 'unassigned'), largest first, minor stops "
            "apart. Each stop is classified by its whole length and only its time inside the "
            "range counts, as in the API's stop list (GET /sites/{site}/stop-reasons).",
            api_target(
                "A",
                "/api/v1/sites/$site/stop-reasons",
                (
                    ("from", "${__from:date:iso}"),
                    ("to", "${__to:date:iso}"),
                    ("line", "${line:csv}"),
                    ("machine", "${machine:csv}"),
                ),
                (
                    ("label", "Reason", "string"),
                    ("category", "Category", "string"),
                    ("seconds", "Downtime", "number"),
                    ("count", "Stops", "number"),
                    ("share", "Share", "number"),
                    ("cumulative_share", "Cumulative", "number"),
                    ("machines", "Machines", "string"),
                ),
                root="reasons",
                datasource=API_SITE_DS,
            ),
            {"seconds": "s", "share": "percentunit", "cumulative_share": "percentunit"},
        ),
        12,
        8,
    )
    b.add(
        timeseries(
            "Micro-stops, hour by hour",
            "Seconds of stops shorter than the micro-stop threshold (kpi.yaml micro_stop_s), per "
            "machine (ISO 22400: availability loss; Nakajima: idling and minor stops).",
            [
                influx_target(
                    "A",
                    select(
                        [total("adet_minor_s", "micro-stops")],
                        HOUR,
                        time_group="1h",
                        tags=[schema.MACHINE_TAG],
                    ),
                )
            ],
            unit="s",
            bars=True,
            display_name="${__field.labels.machine}",
        ),
        12,
        8,
    )
    b.row("Energy")
    b.add(
        stat(
            "Energy per good part",
            "Over the range: " + _definition_text(("kwh_per_good", "kwh_per_part")) + ".",
            [
                influx_target(
                    "A",
                    select(
                        [
                            kpi("kwh_per_good", "kWh per good part"),
                            kpi("kwh_per_part", "kWh per part"),
                        ],
                        HOUR,
                    ),
                )
            ],
            unit=unit_of("kwh_per_good"),
            decimals=3,
        ),
        8,
        6,
    )
    b.add(
        timeseries(
            "Energy per good part, hour by hour",
            "Each hour's electricity over that hour's good parts, per machine.",
            [
                influx_target(
                    "A",
                    select(
                        [kpi("kwh_per_good", "kWh per good part")],
                        HOUR,
                        time_group="1h",
                        tags=[schema.MACHINE_TAG],
                    ),
                )
            ],
            unit=unit_of("kwh_per_good"),
            display_name="${__field.labels.machine}",
        ),
        16,
        6,
    )
    b.row("Data freshness")
    fresh = (
        (schema.MACHINE_STATE, "product_id", "machine states (OPC UA)"),
        (schema.COUNTER, "part_count", "part counters (OPC UA)"),
        (schema.ENERGY, "energy_kwh", "energy meters (MQTT / Sparkplug B)"),
    )
    for meas, fld, label in fresh:
        where = SITE_FILTER if meas == schema.ENERGY else ASSET_FILTER
        b.add(
            stat(
                f"Newest sample: {label}",
                f"Time of the newest {meas}.{fld} sample per asset in the range.",
                [
                    influx_target(
                        "A",
                        select(
                            [f"last({ident(fld)})"], meas, where=where, tags=[schema.MACHINE_TAG]
                        ),
                    )
                ],
                unit="dateTimeFromNow",
                fields="/^Time$/",
                display_name="${__field.labels.machine}",
            ),
            8,
            4,
        )
    b.add(
        _panel(
            "state-timeline",
            "Gateway connection per source",
            "gateway_connection.connected per gateway and source session (true connected, false "
            "lost), written with the gateway's clock when a session goes up or down.",
            [
                influx_target(
                    "A",
                    select(
                        [f'last({ident(schema.CONNECTED_FIELD)}) AS "connected"'],
                        schema.CONNECTION_MEASUREMENT,
                        where=SITE_FILTER,
                        time_group="$__interval",
                        zone=zone,
                        tags=[schema.GATEWAY_TAG, schema.SOURCE_TAG],
                        fill="none",
                    ),
                )
            ],
            mappings=[
                {
                    "type": "value",
                    "options": {
                        "false": {"text": "disconnected", "color": "red", "index": 0},
                        "true": {"text": "connected", "color": "green", "index": 1},
                    },
                }
            ],
            display_name="${__field.labels.gateway} ${__field.labels.source}",
            options={
                "showValue": "never",
                "mergeValues": True,
                "rowHeight": 0.8,
                "legend": {"showLegend": True, "displayMode": "list", "placement": "bottom"},
                "tooltip": {"mode": "single", "sort": "none"},
            },
            custom={"fillOpacity": 80, "lineWidth": 0},
        ),
        24,
        5,
        may_be_empty="sessions change rarely: no change inside a short range is normal",
    )
    return b


_SHIFT_COLUMNS: tuple[tuple[str, str, str], ...] = (
    # (component or KPI id, column, kind)
    ("pot_s", "POT", "sum"),
    ("pbt_s", "PBT", "sum"),
    ("apt_s", "run (APT)", "sum"),
    ("breakdown_s", "breakdown", "kpi"),
    ("setup_adjustment_s", "setup", "kpi"),
    ("idling_minor_stops_s", "micro-stops", "kpi"),
    ("reduced_speed_s", "reduced speed", "kpi"),
    ("process_defects_s", "defects", "kpi"),
    ("idle_no_order_s", "idle / no order", "kpi"),
    ("no_data_s", "no data", "kpi"),
    ("gq", "good", "sum"),
    ("sq", "scrap", "sum"),
    ("oee", "OEE", "kpi"),
    ("availability", "A", "kpi"),
    ("effectiveness", "E", "kpi"),
    ("quality", "Q", "kpi"),
    ("kwh_per_good", "kWh per good part", "kpi"),
)
_COMPONENT_TEXT = {
    "pot_s": "planned operation time (shift calendar)",
    "pbt_s": "planned busy time = POT - planned down",
    "apt_s": "actual production time (IN_CYCLE inside PBT)",
    "gq": "good quantity (first pass)",
    "sq": "scrap quantity",
}


def _shift_table(group_tags: Sequence[str]) -> tuple[dict[str, Any], str]:
    cols: list[str] = []
    overrides: list[dict[str, Any]] = []
    text: list[str] = []
    for key, col, kind in _SHIFT_COLUMNS:
        if kind == "sum":
            cols.append(total(key, col))
            unit = "s" if key.endswith("_s") else "none"
            definition = _COMPONENT_TEXT[key]
        else:
            cols.append(kpi(key, col))
            unit = unit_of(key)
            definition = f"{KPIS[key].label} = {KPIS[key].definition}"
        text.append(f"{col}: {definition}")
        props: list[dict[str, Any]] = [
            {"id": "unit", "value": unit},
            {"id": "description", "value": definition},
        ]
        if unit == "percentunit":
            props.append({"id": "decimals", "value": 1})
        overrides.append({"matcher": {"id": "byName", "options": col}, "properties": props})
    target = influx_target("A", select(cols, SHIFT, tags=group_tags), fmt="table")
    return (
        {
            "targets": [target],
            "overrides": overrides,
        },
        "; ".join(text),
    )


def shift_report(site: SiteModel) -> _Board:
    b = _Board(
        "zhizao-shift-report",
        "Shift report",
        "One row per shift and machine from kpi_machine_shift (a shift belongs to the local date "
        "it starts on). Ratios are sum over sum of the shift's components.",
        site.timezone,
        "now-7d",
        "",
        asset_variables(),
        ["shift", "report"],
    )
    for title, tags in (
        (
            "Shifts by machine",
            [schema.DATE_TAG, schema.SHIFT_TAG, schema.LINE_TAG, schema.MACHINE_TAG],
        ),
        ("Shifts by line", [schema.DATE_TAG, schema.SHIFT_TAG, schema.LINE_TAG]),
    ):
        parts, text = _shift_table(tags)
        b.add(
            _panel(
                "table",
                title,
                "Shifts starting in the range. " + text + ".",
                parts["targets"],
                overrides=parts["overrides"],
                transformations=[{"id": "merge", "options": {}}],
                options={"showHeader": True, "cellHeight": "sm", "footer": {"show": False}},
            ),
            24,
            12 if title.endswith("machine") else 8,
        )
    return b


def _coefficient_text(energy: EnergyConfig) -> str:
    lib = CoefficientLibrary.load(energy.coefficients)
    conv = lib.conversion(energy.conversion)
    lines = [
        f"**Conversion set `{conv.id}`** ({conv.convention} convention, {conv.year}; {conv.source}):",
        "",
        "| medium | kgce per unit |",
        "|---|---|",
    ]
    for medium, c in conv.coefficients.items():
        lines.append(f"| {medium} | {c.value:g} kgce/{c.unit} |")
    lines += ["", "**Emission factors**:", "", "| id | medium | value | year | publisher |",
              "|---|---|---|---|---|"]  # fmt: skip
    for fid in energy.emission_factors:
        f = lib.factor(fid)
        lines.append(f"| `{f.id}` | {f.medium} | {f.value:g} {f.unit} | {f.year} | {f.publisher} |")
    lines += [
        "",
        "Generated from analytics/coefficients.yaml and the KPI engine's energy settings.",
    ]
    return "\n".join(lines)


def plant_fields(site: SiteModel) -> list[str]:
    """The ``kpi_site_*`` fields of the site's purchased plant meters (``<medium>_<unit>``)."""
    out: list[str] = []
    for m in site.meters:
        if m.asset or not m.purchased:
            continue
        name = f"{m.medium}_{m.unit.lower()}" if m.unit else m.medium
        if name not in out:
            out.append(name)
    return out


VALUE_KPIS = ("kgce_per_10k_cny", "kgco2_per_10k_cny")
# the plant's bars per local month: (title, catalog site KPIs, their aliases)
PLANT_MONTHLY: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...] = (
    (
        "Water per unit of output, month by month",
        ("water_per_output", "water_per_10k_cny"),
        ("m3 per good part", "m3 per 10k CNY"),
    ),
    (
        "Plant energy and CO2 per unit of output, month by month",
        ("plant_kgce_per_output", "plant_kgco2_per_output"),
        ("kgce per good part (plant)", "kgCO2 per good part (plant)"),
    ),
    ("Renewable share, month by month", ("renewable_share",), ("renewable share",)),
)
PLANT_KPIS = (
    "water_per_output",
    "water_per_10k_cny",
    "plant_kgce_per_output",
    "plant_kgco2_per_output",
    "renewable_share",
)


def _monthly(
    title: str,
    ids: Sequence[str],
    aliases: Sequence[str],
    zone: str,
    *,
    measurement: str = DAY,
    where: str = ASSET_FILTER,
) -> dict[str, Any]:
    """A bar per local month of the catalog KPIs ``ids`` (plain ratios of one component each).

    InfluxQL has no calendar month: the query sums the KPIs' components per local day and
    Grafana sums them per local month (format time YYYY-MM in the site's time zone, group by,
    sum) before dividing and scaling: sum over sum, never a mean of ratios."""
    ks = [catalog_get(i) for i in ids]
    terms = [(k.numerator[0], k.denominator[0], k.scale) for k in ks]
    components = list(dict.fromkeys(c for n, d, _ in terms for c in (n, d)))
    ratio_alias = [a if scale == 1 else f"{a} (unscaled)" for a, (_, _, scale) in zip(aliases, terms, strict=True)]  # fmt: skip
    divide = [
        {
            "id": "calculateField",
            "options": {
                "mode": "binary",
                "binary": {"left": f"{n} (sum)", "operator": "/", "right": f"{d} (sum)"},
                "alias": ra,
            },
        }
        for (n, d, _), ra in zip(terms, ratio_alias, strict=True)
    ]
    scale = [
        {
            "id": "calculateField",
            "options": {
                "mode": "binary",
                "binary": {"left": ra, "operator": "*", "right": f"{sc:g}"},
                "alias": a,
            },
        }
        for (_, _, sc), ra, a in zip(terms, ratio_alias, aliases, strict=True)
        if sc != 1
    ]
    hidden = [f"{c} (sum)" for c in components] + [r for r, a in zip(ratio_alias, aliases, strict=True) if r != a]  # fmt: skip
    formulas = "; ".join(
        (f"{sc:g} x " if sc != 1 else "") + f"sum({n}) / sum({d})" for n, d, sc in terms
    )
    return _panel(
        "barchart",
        title,
        "Components summed per local day (InfluxQL has no calendar month), then per local "
        "month by Grafana (format time YYYY-MM in the site's time zone, group by, sum), "
        f"then divided: {formulas} per month.",
        [
            influx_target(
                "A",
                select(
                    [total(c) for c in components],
                    measurement,
                    where=where,
                    time_group="1d",
                    zone=zone,
                ),
                fmt="table",
            )
        ],
        unit="none",
        options={
            "xField": "Time",  # the local month (YYYY-MM) after the transformations
            "orientation": "vertical",
            "showValue": "auto",
            "groupWidth": 0.7,
            "barWidth": 0.9,
            "legend": {"showLegend": True, "displayMode": "list", "placement": "bottom"},
            "tooltip": {"mode": "multi", "sort": "none"},
        },
        transformations=[
            {
                "id": "formatTime",
                "options": {
                    "timeField": "Time",
                    "outputFormat": "YYYY-MM",
                    "useTimezone": True,
                    "timezone": zone,
                },
            },
            {
                "id": "groupBy",
                "options": {
                    "fields": {
                        "Time": {"operation": "groupby", "aggregations": []},
                        **{
                            c: {"operation": "aggregate", "aggregations": ["sum"]}
                            for c in components
                        },
                    }
                },
            },
            *divide,
            *scale,
            {"id": "organize", "options": {"excludeByName": dict.fromkeys(hidden, True)}},
        ],
    )


def green_factory(site: SiteModel, energy: EnergyConfig) -> _Board:
    zone = site.timezone
    renewable = [m.id for m in site.meters if m.renewable and not m.asset]
    b = _Board(
        "zhizao-green-factory",
        "Green factory",
        "Comprehensive energy (GB/T 2589) and CO2 per good part, per part and per 10k CNY of "
        "output value, the plant's water and energy per unit of its output, the renewable "
        "share, the plant's purchased media, and the coefficients in use. Days and months are local to the site.",
        zone,
        "now-90d",
        "",
        asset_variables(),
        ["green", "energy"],
    )
    ids = ("kgce_per_good", "kgco2_per_good", "kgce_per_part", "kgco2_per_part", "kwh_per_good")
    for i in ids:
        b.add(
            stat(
                KPIS[i].label,
                f"Over the range (days starting in it): {KPIS[i].definition}.",
                [influx_target("A", select([kpi(i, KPIS[i].label)], DAY))],
                unit=unit_of(i),
                decimals=3,
            ),
            24 // len(ids),
            4,
        )
    b.add(
        timeseries(
            "Energy and CO2 per good part, day by day",
            "Each local day's components, sum over sum: "
            + _definition_text(("kgce_per_good", "kgco2_per_good")),
            [
                influx_target(
                    "A",
                    select(
                        [
                            kpi("kgce_per_good", "kgce per good part"),
                            kpi("kgco2_per_good", "kgCO2 per good part"),
                        ],
                        DAY,
                        time_group="1d",
                        zone=zone,
                    ),
                )
            ],
            unit="none",
        ),
        12,
        8,
    )
    b.add(
        _monthly(
            "Energy and CO2 per good part, month by month",
            ("kgce_per_good", "kgco2_per_good"),
            ("kgce per good part", "kgCO2 per good part"),
            zone,
        ),
        12,
        8,
    )
    # per output value (good parts x unit_value_cny), the commission's 10k CNY convention
    for i in VALUE_KPIS:
        b.add(
            stat(
                KPIS[i].label,
                f"Over the range (days starting in it): {KPIS[i].definition}. Good parts of "
                "products without unit_value_cny in the site model have no value (flag "
                "no_unit_value in the API).",
                [influx_target("A", select([kpi(i, KPIS[i].label)], DAY))],
                unit=unit_of(i),
                decimals=2,
            ),
            6,
            8,
        )
    b.add(
        _monthly(
            "Energy and CO2 per 10k CNY of output value, month by month",
            VALUE_KPIS,
            ("kgce per 10k CNY", "kgCO2 per 10k CNY"),
            zone,
        ),
        12,
        8,
    )
    # the plant as a whole (kpi_site_day): its meters over its output machines' good parts
    for i in PLANT_KPIS:
        k = SITE_KPIS[i]
        b.add(
            stat(
                k.label,
                f"Over the range (days starting in it), the plant row (kpi_site_day): "
                f"{k.definition}. Output machines: {', '.join(site.output_machines()) or 'none'}."
                + (
                    f" Renewable meters: {', '.join(renewable) or 'none (no value)'}."
                    if i == "renewable_share"
                    else ""
                ),
                [influx_target("A", select([kpi(i, k.label)], SITE_DAY, where=SITE_FILTER))],
                unit=unit_of(i),
                decimals=1 if i == "renewable_share" else 3,
            ),
            24 // len(PLANT_KPIS),
            4,
        )
    for title, monthly_ids, aliases in PLANT_MONTHLY:
        b.add(
            _monthly(title, monthly_ids, aliases, zone, measurement=SITE_DAY, where=SITE_FILTER),
            12,
            8,
        )
    fields = plant_fields(site)
    site_cols = [f"sum({ident(f)}) AS {ident(f)}" for f in (*fields, "kgce", "kgco2")]
    b.add(
        timeseries(
            "Plant intake by medium, day by day",
            "The plant meters' increments per local day (kpi_site_day): "
            + ", ".join(fields)
            + ", and the comprehensive energy (kgce) and CO2 (kgCO2) computed from them. "
            "Fresh water is tracked as water, not added to energy.",
            [
                influx_target(
                    "A", select(site_cols, SITE_DAY, where=SITE_FILTER, time_group="1d", zone=zone)
                )
            ],
            unit="none",
            bars=True,
        ),
        16,
        8,
    )
    b.add(
        _panel(
            "text",
            "Coefficients and emission factors in use",
            "The KPI engine's energy.conversion and energy.emission_factors.",
            [],
            options={"mode": "markdown", "content": _coefficient_text(energy)},
        ),
        8,
        8,
    )
    return b


def health(site: SiteModel, scrape_interval: str) -> _Board:
    b = _Board(
        "zhizao-health",
        "Gateway and ingest health",
        "The gateway's and ingest's Prometheus metrics (scraped by VictoriaMetrics or Prometheus), "
        "and the KPI engine's newest window from InfluxDB.",
        site.timezone,
        "now-1h",
        "30s",
        [
            asset_variables(("site",))[0],
            {
                "name": "instance",
                "label": "service instance",
                "type": "query",
                "datasource": PROMETHEUS_DS,
                "query": {"query": "label_values(up, instance)", "refId": "instance"},
                "definition": "label_values(up, instance)",
                "refresh": 2,
                "sort": 1,
                "multi": True,
                "includeAll": True,
                "current": {},
                "options": [],
                "hide": 0,
            },
        ],
        ["health", "gateway", "ingest"],
    )
    inst = '{instance=~"$instance"}'
    rate = "[$__rate_interval]"
    prom: tuple[tuple[str, str, list[tuple[str, str]], str, str], ...] = (
        ("Outbox depth", "samples stored in the gateway's outbox, not yet confirmed by the uplink",
         [(f"zhizao_gateway_outbox_samples{inst}", "{{instance}}")], "short", ""),
        ("Oldest sample in the outbox", "age of the oldest stored sample (store-and-forward backlog)",
         [(f"zhizao_gateway_outbox_oldest_age_seconds{inst}", "{{instance}}")], "s", ""),
        ("Samples confirmed per second", "samples the central broker confirmed (PUBACK) per second",
         [(f"sum by (instance) (rate(zhizao_gateway_uplink_samples_acked_total{inst}{rate}))", "{{instance}}")], "short", ""),
        ("Source reconnects", "sessions re-established per source",
         [(f"sum by (source) (increase(zhizao_gateway_source_reconnects_total{inst}{rate}))", "{{source}}")], "short", ""),
        ("Source connected", "1 while the source's session is up",
         [(f"zhizao_gateway_source_connected{inst}", "{{source}}")], "short", ""),
        ("Outbox drops by reason", "samples dropped by the configured outbox policy (none in a healthy system)",
         [(f"sum by (reason) (increase(zhizao_gateway_outbox_dropped_samples_total{inst}{rate}))", "{{reason}}")], "short",
         "nothing was dropped"),
        ("Quarantine by reason", "samples and whole messages ingest quarantined, by reason",
         [(f"sum by (reason) (increase(zhizao_ingest_samples_rejected_total{inst}{rate}))", "samples {{reason}}"),
          (f"sum by (reason) (increase(zhizao_ingest_messages_rejected_total{inst}{rate}))", "messages {{reason}}")],
         "short", "nothing was quarantined"),
        ("Ingest lag", "age of the oldest received, unacknowledged message; age of the newest stored frame",
         [(f"zhizao_ingest_consumer_lag_seconds{inst}", "consumer lag {{instance}}"),
          (f"zhizao_ingest_frame_age_seconds{inst}", "frame age {{instance}}")], "s", ""),
        ("Samples written to InfluxDB per second", "samples ingest stored",
         [(f"sum by (instance) (rate(zhizao_ingest_samples_written_total{inst}{rate}))", "{{instance}}")], "short", ""),
        ("InfluxDB write errors", "failed batch writes by kind",
         [(f"sum by (kind) (increase(zhizao_ingest_influx_errors_total{inst}{rate}))", "{{kind}}")], "short",
         "no write failed"),
        ("KPI engine: time since the last successful run", "wall seconds since the engine's last "
         "successful run ended (it runs every schedule.interval_s; /healthz turns 503 after "
         "health.fail_after_runs failed runs in a row)",
         [(f"time() - zhizao_kpi_last_success_timestamp_seconds{inst}", "{{instance}}")], "s", ""),
        ("KPI engine: run duration and failed runs in a row", "wall time of the last successful "
         "run; runs failed since the last success",
         [(f"zhizao_kpi_run_duration_seconds{inst}", "duration {{instance}}"),
          (f"zhizao_kpi_consecutive_failed_runs{inst}", "failed in a row {{instance}}")], "short", ""),
        ("KPI engine: raw points read and points written per run", "what the last run read from "
         "InfluxDB (raw field values since the previous run, plus late data) and wrote",
         [(f"zhizao_kpi_last_run_points_read{inst}", "read {{instance}}"),
          (f"zhizao_kpi_last_run_points_written{inst}", "written {{instance}}")], "short", ""),
    )  # fmt: skip
    for title, desc, exprs, unit, empty in prom:
        b.add(
            timeseries(
                title,
                desc + ".",
                [prom_target(_ref(i), e, legend) for i, (e, legend) in enumerate(exprs)],
                unit=unit,
            ),
            8,
            7,
            may_be_empty=empty,
        )
    b.add(
        stat(
            "KPI engine: newest window written",
            "Start of the newest hour window in kpi_machine_hour for the site, from InfluxDB (what "
            "the engine stored, whichever engine: a stopped one shows here as an old window).",
            [
                influx_target(
                    "A", f'SELECT last("calendar_s") FROM {ident(HOUR)} WHERE {SITE_FILTER}'
                )
            ],
            unit="dateTimeFromNow",
            fields="/^Time$/",
        ),
        8,
        7,
    )
    return b


# -- commission (the API as a JSON datasource) ----------------------------------------------------

# (JSON key, column title, Infinity column type); "met_<year>" is true/false/null, shown as text
Column = tuple[str, str, str]
_TARGET_COLUMNS: tuple[Column, ...] = (
    ("target_2020", "2020 target", "number"),
    ("met_2020", "2020 met", "string"),
    ("target_2025", "2025 target", "number"),
    ("met_2025", "2025 met", "string"),
)
_MET_MAPPINGS = [
    {
        "type": "value",
        "options": {
            "true": {"text": "met", "color": "green", "index": 0},
            "false": {"text": "not met", "color": "red", "index": 1},
        },
    },
    {"type": "special", "options": {"match": "null", "result": {"text": "-", "index": 2}}},
]


def api_target(
    ref: str,
    path: str,
    params: Sequence[tuple[str, str]],
    columns: Sequence[Column],
    root: str = "",
    datasource: dict[str, str] = API_DS,
) -> dict[str, Any]:
    """An Infinity query: GET ``<datasource url><path>?params`` (Grafana variables substituted in
    the values), the rows at ``root`` ("" = the answer is the array), one column per JSON key."""
    return {
        "refId": ref,
        "datasource": datasource,
        "type": "json",
        "source": "url",
        "parser": "backend",
        "format": "table",
        "url": path,
        "url_options": {
            "method": "GET",
            "params": [{"key": k, "value": v} for k, v in params],
            "headers": [],
        },
        "root_selector": root,
        "columns": [{"selector": k, "text": t, "type": ty} for k, t, ty in columns],
        "filters": [],
    }


def _api_variable(
    name: str, label: str, path: str, params: Sequence[tuple[str, str]], text: str, value: str
) -> dict[str, Any]:
    query = api_target(
        name, path, params, ((text, "__text", "string"), (value, "__value", "string"))
    )
    shown = path + ("?" + "&".join(f"{k}={v}" for k, v in params) if params else "")
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": API_DS,
        "query": {"queryType": "infinity", "refId": name, "infinityQuery": query, "query": ""},
        "definition": shown,
        "refresh": 1,
        "sort": 0,  # the API's order (years newest first, indicators in the plan's order)
        "multi": False,
        "includeAll": False,
        "current": {},
        "options": [],
        "hide": 0,
    }


def _column_overrides(columns: Sequence[Column], units: dict[str, str]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for key, title, _ in columns:
        props: list[dict[str, Any]] = []
        if key.startswith("met_"):
            props.append({"id": "mappings", "value": _MET_MAPPINGS})
            props.append({"id": "custom.cellOptions", "value": {"type": "color-text"}})
        if key == "coverage":
            props.append({"id": "custom.cellOptions", "value": {"type": "gauge", "mode": "basic"}})
            props += [{"id": "min", "value": 0}, {"id": "max", "value": 1}]
        if key in units:
            props.append({"id": "unit", "value": units[key]})
        if props:
            out.append({"matcher": {"id": "byName", "options": title}, "properties": props})
    return out


def _api_table(
    title: str, description: str, target: dict[str, Any], units: dict[str, str]
) -> dict[str, Any]:
    columns = [(c["selector"], c["text"], c["type"]) for c in target["columns"]]
    return _panel(
        "table",
        title,
        description,
        [target],
        overrides=_column_overrides(columns, units),
        options={"showHeader": True, "cellHeight": "sm", "footer": {"show": False}},
    )


def commission(site: SiteModel) -> _Board:
    """The commission's indicators from the API (never from InfluxDB: the figures combine factory
    reports with yearly meter totals, and the commission must not read shop-floor data)."""
    table = ("cohort", "$cohort"), ("year", "$year")
    b = _Board(
        "zhizao-commission",
        "Commission: action-plan indicators",
        "The Shanghai action plan's indicators per district and for the cohort against the 2020 "
        "and 2025 targets, with coverage and a ranking of factories, from the zhizao API "
        f"({COMMISSION_API}/...) with a commission token. Figures are sums of numerators over "
        "sums of denominators of the factories that reported every input; a row over an "
        "incomplete panel is flagged incomplete_panel. The time picker does not apply: the "
        "figures are per calendar year ($year).",
        site.timezone,
        "now-1y",
        "",
        [
            _api_variable("cohort", "cohort", f"{COMMISSION_API}/cohorts", (), "name", "id"),
            _api_variable(
                "year", "year", f"{COMMISSION_API}/years", (("cohort", "$cohort"),), "year", "year"
            ),
            _api_variable(
                "indicator",
                "indicator to rank by",
                f"{COMMISSION_API}/indicator-definitions",
                (),
                "label_en",
                "id",
            ),
        ],
        ["commission", "indicators"],
    )
    head: tuple[Column, ...] = (
        ("seed_number", "No.", "number"),
        ("label_en", "Indicator", "string"),
        ("label_zh", "指标", "string"),
        ("value", "Value", "number"),
        ("unit", "Unit", "string"),
        ("kind", "Kind", "string"),
    )
    tail: tuple[Column, ...] = (
        ("reported", "Reported", "number"),
        ("factories", "Factories", "number"),
        ("flags", "Flags", "string"),
        ("reason", "Why no value", "string"),
    )
    rows = f"{COMMISSION_API}/indicator-rows"
    b.add(
        _api_table(
            "Cohort: indicators vs the 2020 and 2025 targets",
            "One row per indicator for the whole cohort in $year: the value (sum over sum over "
            "the factories that reported every input; declines on the fixed panel of factories "
            "complete in both years), its 2020 and 2025 targets and whether they are met "
            "(at least / at most the target, by indicator), and how many factories it covers.",
            api_target("A", rows, (*table, ("level", "cohort")), (*head, *_TARGET_COLUMNS, *tail)),
            {"value": "none"},
        ),
        24,
        12,
    )
    b.add(
        _api_table(
            "Districts: indicators vs the targets",
            "The same indicators per district (sum over sum over the district's factories); a "
            "district with nothing to compute shows why instead of a value.",
            api_target(
                "A",
                rows,
                (*table, ("level", "district")),
                (("group", "District", "string"), *head, *_TARGET_COLUMNS, *tail),
            ),
            {"value": "none"},
        ),
        24,
        14,
    )
    b.add(
        _api_table(
            "Coverage: who reported",
            "Per indicator: the cohort's factories that reported every input the indicator needs "
            "(for declines: in the year and the base year), the share, and who is missing.",
            api_target(
                "A",
                rows,
                (*table, ("level", "cohort")),
                (
                    ("label_en", "Indicator", "string"),
                    ("reported", "Reported", "number"),
                    ("factories", "Factories", "number"),
                    ("coverage", "Coverage", "number"),
                    ("missing", "Missing", "string"),
                    ("base_year", "Base year", "number"),
                ),
            ),
            {"coverage": "percentunit"},
        ),
        12,
        12,
    )
    b.add(
        _api_table(
            "Factories ranked by $indicator",
            "The cohort's factories ranked by the chosen indicator in $year, best first in the "
            "indicator's direction (highest first where a target is a minimum, lowest first "
            "where it is a maximum); equal values share a rank; factories without a figure come "
            "last with the reason.",
            api_target(
                "A",
                f"{COMMISSION_API}/ranking",
                (*table, ("indicator", "$indicator")),
                (
                    ("rank", "Rank", "number"),
                    ("name", "Factory", "string"),
                    ("district", "District", "string"),
                    ("value", "Value", "number"),
                    ("unit", "Unit", "string"),
                    ("flags", "Flags", "string"),
                    ("reason", "Why no value", "string"),
                ),
                root="rows",
            ),
            {"value": "none"},
        ),
        12,
        12,
    )
    return b


@dataclass(frozen=True, slots=True)
class Generated:
    """The dashboards (uid -> JSON) and, per dashboard, the panels that may legitimately show
    no data (panel id -> why), which the query tests accept as empty."""

    dashboards: dict[str, dict[str, Any]]
    may_be_empty: dict[str, dict[int, str]]


def generate(
    site: SiteModel, energy: EnergyConfig | None = None, *, scrape_interval: str = "15s"
) -> Generated:
    """Every dashboard for ``site`` (time zone, machine types, plant meters)."""
    energy = energy or EnergyConfig()
    boards = [
        line_live(site),
        shift_report(site),
        green_factory(site, energy),
        health(site, scrape_interval),
        commission(site),
    ]
    return Generated(
        {b.uid: b.json() for b in boards},
        {b.uid: dict(b.may_be_empty) for b in boards},
    )


def render(dashboard: dict[str, Any]) -> str:
    return json.dumps(dashboard, indent=2, ensure_ascii=False, sort_keys=False) + "\n"


def write(generated: Generated, out_dir: Path = OUT_DIR) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for uid, board in generated.dashboards.items():
        path = out_dir / DASHBOARD_FILES[uid]
        path.write_text(render(board), encoding="utf-8")
        paths.append(path)
    return paths


def stale(generated: Generated, out_dir: Path = OUT_DIR) -> list[str]:
    """Files in ``out_dir`` that differ from what the generator produces."""
    out = []
    for uid, board in generated.dashboards.items():
        path = out_dir / DASHBOARD_FILES[uid]
        if not path.exists() or path.read_text(encoding="utf-8") != render(board):
            out.append(str(path))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="write the Grafana dashboards from the KPI catalog")
    p.add_argument("--site", required=True, type=Path, help="site model YAML (zhizao sim site)")
    p.add_argument("--out", type=Path, default=OUT_DIR)
    p.add_argument("--check", action="store_true", help="exit 1 if the files are not up to date")
    args = p.parse_args(argv)
    generated = generate(load_site(args.site))
    if args.check:
        differ = stale(generated, args.out)
        for name in differ:
            print(
                f"{name} differs from the generator's output; run python -m dashboards.generate",
                file=sys.stderr,
            )
        return 1 if differ else 0
    for path in write(generated, args.out):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
