"""Structural rules every dashboard must follow; each check returns the problems it found.

The rules are the complaints users have about other OEE dashboards, turned into checks: ratios
that are not sum over sum of stored components, days in UTC, stat panels that show only the last
bucket, macros the InfluxQL datasource does not substitute, intervals InfluxQL refuses.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from analytics.catalog import CATALOG, SITE_CATALOG, influxql_expression
from dashboards.grafana import calculate_interval, panel_resolution

__all__ = [
    "BUILTIN_MACROS",
    "FORBIDDEN",
    "REFERENCE",
    "all_problems",
    "iter_panels",
    "known_units",
    "load_dashboards",
    "provisioned_datasources",
    "queries",
]

HERE = Path(__file__).resolve().parent
REFERENCE = HERE / "reference" / "grafana_reference.json"
PROVISIONING = HERE / "provisioning"
BUILTIN_MACROS = {
    "timeFilter",
    "interval",
    "__interval",
    "__interval_ms",
    "__rate_interval",
    "__range",
    "__range_s",
    "__range_ms",
}
# the range's ends as text (``${__from:date:iso}``), which a JSON datasource's URL may carry
JSON_MACROS = {"__from", "__to"}
# macros of other datasources (SQL, Flux) that the InfluxQL datasource leaves in the query text,
# and Flux itself
FORBIDDEN = (
    "$__timeFilter",
    "$__timeGroup",
    "$__unixEpoch",
    "$__from",
    "$__to",
    "v.timeRangeStart",
    "from(bucket",
    "|>",
)
LONGEST_RANGE_MS = 10 * 365 * 86400 * 1000  # $__interval must stay a valid InfluxQL unit up to this
ONE_BUCKET_PANELS = {"stat", "gauge", "bargauge"}
_VAR = re.compile(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)")
_TIME_GROUP = re.compile(r"GROUP BY time\(([^)]*)\)", re.IGNORECASE)
_REGEX_LITERAL = re.compile(r"=~\s*/(?:\\.|[^/\\])*/")
_QUOTED = re.compile(r""""(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])*'""")
_KPI_FROM = re.compile(r'FROM\s+"?kpi_', re.IGNORECASE)
_AGGREGATE = re.compile(r"\b([a-z_]+)\(", re.IGNORECASE)


def load_dashboards(directory: Path = HERE / "generated") -> dict[str, dict[str, Any]]:
    """file name -> parsed dashboard JSON."""
    return {
        p.name: json.loads(p.read_text(encoding="utf-8")) for p in sorted(directory.glob("*.json"))
    }


def provisioned_datasources(directory: Path = PROVISIONING / "datasources") -> dict[str, str]:
    """uid -> type of every provisioned datasource."""
    out: dict[str, str] = {}
    for path in sorted(directory.glob("*.yaml")):
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        for ds in doc.get("datasources", []):
            out[str(ds["uid"])] = str(ds["type"])
    return out


def known_units(reference: Path = REFERENCE) -> set[str]:
    """The unit ids of Grafana's value formats (from ``@grafana/data``, committed)."""
    return set(json.loads(reference.read_text(encoding="utf-8"))["units"])


def iter_panels(dashboard: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])  # panels of a collapsed row


def queries(target: Mapping[str, Any]) -> list[str]:
    """The query text(s) of a target (InfluxQL ``query``, PromQL ``expr``, or a JSON
    datasource's URL and parameter values)."""
    out = [str(target[k]) for k in ("query", "expr") if k in target]
    if "url" in target:
        out.append(str(target["url"]))
        out += [str(p["value"]) for p in target.get("url_options", {}).get("params", [])]
    return out


def _variable_query(var: Mapping[str, Any]) -> str:
    q = var.get("query", "")
    if isinstance(q, Mapping) and "infinityQuery" in q:
        return " ".join(queries(q["infinityQuery"]))
    return str(q.get("query", "")) if isinstance(q, Mapping) else str(q)


def _is_json(target: Mapping[str, Any]) -> bool:
    return bool(target.get("datasource", {}).get("type") == "yesoreyeram-infinity-datasource")


_FIELD_PATH = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)*)?$")


def _check_json_target(target: Mapping[str, Any]) -> list[str]:
    """A JSON (Infinity) target reads the zhizao API with the backend parser and field paths
    only: JSONata expressions would run in Grafana, outside the tested emulation."""
    problems = []
    if (target.get("type"), target.get("source"), target.get("parser")) != (
        "json",
        "url",
        "backend",
    ):
        problems.append("a JSON target must be type json, source url, parser backend")
    if not str(target.get("url", "")).startswith("/api/v1/"):
        problems.append(
            f"a JSON target must read the zhizao API (/api/v1/...): {target.get('url')}"
        )
    selectors = [str(target.get("root_selector", ""))]
    selectors += [str(c.get("selector", "")) for c in target.get("columns", [])]
    for sel in selectors:
        if not _FIELD_PATH.match(sel):
            problems.append(f"selector {sel!r} is not a field path")
    if not target.get("columns"):
        problems.append("a JSON target must name its columns")
    return problems


def _check_ratio(query: str) -> list[str]:
    """Every division in an InfluxQL query must be a catalog expression (sum over sum)."""
    text = _REGEX_LITERAL.sub("=~ /re/", query)
    every = (*CATALOG, *SITE_CATALOG)
    for expr in sorted((influxql_expression(k.id) for k in every), key=len, reverse=True):
        text = text.replace(expr, "KPI")
    # identifiers ("kgce/GQ") and strings (tz('Asia/Shanghai')) may hold a slash
    bare = _QUOTED.sub("q", text.replace("/re/", ""))
    problems = []
    if "/" in bare:
        problems.append(f"a ratio that is not a catalog expression (sum over sum): {query}")
    if _KPI_FROM.search(query):
        for fn in _AGGREGATE.findall(bare):
            if fn.lower() not in ("sum", "last", "time", "fill", "tz"):
                problems.append(f"{fn}() over KPI components (only sums add up): {query}")
    return problems


def _check_calculations(panel: Mapping[str, Any]) -> list[str]:
    """A Grafana-side division must divide two summed components that a catalog KPI divides;
    a KPI with a scale (per 10k CNY) must then be multiplied by exactly that scale."""
    scales = {
        (k.numerator[0], k.denominator[0]): k.scale
        for k in (*CATALOG, *SITE_CATALOG)
        if len(k.numerator) == 1 and len(k.denominator) == 1 and not k.factors
    }
    calcs = [
        t.get("options", {})
        for t in panel.get("transformations", [])
        if t.get("id") == "calculateField"
    ]
    scaled_by = {
        str(o.get("binary", {}).get("left", "")): str(o.get("binary", {}).get("right", ""))
        for o in calcs
        if o.get("binary", {}).get("operator") == "*"
    }
    problems = []
    for o in calcs:
        binary = o.get("binary", {})
        if binary.get("operator") != "/":
            continue
        num = str(binary.get("left", "")).removesuffix(" (sum)")
        den = str(binary.get("right", "")).removesuffix(" (sum)")
        summed = str(binary.get("left", "")).endswith(" (sum)") and str(
            binary.get("right", "")
        ).endswith(" (sum)")
        scale = scales.get((num, den))
        if not summed or scale is None:
            problems.append(
                f"panel {panel.get('title')!r}: division {num}/{den} is not a catalog KPI"
            )
        elif scale != 1 and scaled_by.get(str(o.get("alias", ""))) != f"{scale:g}":
            problems.append(
                f"panel {panel.get('title')!r}: division {num}/{den} is not multiplied by the "
                f"catalog KPI's scale {scale:g}"
            )
    return problems


def _units(panel: Mapping[str, Any]) -> list[str]:
    fc = panel.get("fieldConfig", {})
    units = [fc.get("defaults", {}).get("unit")]
    for o in fc.get("overrides", []):
        units += [p["value"] for p in o.get("properties", []) if p.get("id") == "unit"]
    return [u for u in units if u is not None]


def _datasource_refs(dashboard: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    for var in dashboard.get("templating", {}).get("list", []):
        if "datasource" in var:
            yield f"variable {var['name']}", var["datasource"]
    for panel in iter_panels(dashboard):
        if panel.get("type") == "row":
            continue
        if "datasource" in panel:
            yield f"panel {panel['id']}", panel["datasource"]
        for t in panel.get("targets", []):
            yield f"panel {panel['id']} target {t.get('refId')}", t.get("datasource", {})


def dashboard_problems(
    name: str,
    dashboard: Mapping[str, Any],
    datasources: Mapping[str, str],
    units: set[str],
) -> list[str]:
    p: list[str] = []
    if dashboard.get("schemaVersion") != 42:
        p.append(f"{name}: schemaVersion {dashboard.get('schemaVersion')} (classic JSON is 42)")
    if not dashboard.get("uid"):
        p.append(f"{name}: no uid")
    zone = str(dashboard.get("timezone", ""))
    ids = [panel.get("id") for panel in iter_panels(dashboard)]
    dup = sorted({i for i in ids if ids.count(i) > 1}, key=str)
    if dup or None in ids:
        p.append(f"{name}: panel ids not unique or missing: {dup}")
    for where, ref in _datasource_refs(dashboard):
        uid, kind = ref.get("uid"), ref.get("type")
        if uid not in datasources or datasources[str(uid)] != kind:
            p.append(f"{name}: {where}: datasource {ref} is not provisioned")
    defined: list[str] = []
    for var in dashboard.get("templating", {}).get("list", []):
        q = var.get("query")
        if isinstance(q, Mapping) and "infinityQuery" in q:
            p += [
                f"{name}: variable {var['name']}: {x}"
                for x in _check_json_target(q["infinityQuery"])
            ]
        used = set(_VAR.findall(_variable_query(var))) - BUILTIN_MACROS
        if used - set(defined):
            p.append(
                f"{name}: variable {var['name']} uses {sorted(used - set(defined))} before they are defined"
            )
        defined.append(str(var["name"]))
    for panel in iter_panels(dashboard):
        title = f"{name}: panel {panel.get('id')} {panel.get('title')!r}"
        for u in _units(panel):
            if u not in units and not re.match(r"^(suffix|prefix):.+", u):
                p.append(f"{title}: unit {u!r} is not a Grafana unit")
        p += [f"{name}: {x}" for x in _check_calculations(panel)]
        for t in panel.get("targets", []):
            if str(t.get("queryType", "")).lower() == "flux" or t.get("language") == "flux":
                p.append(f"{title}: Flux query")
            if _is_json(t):
                p += [f"{title}: {x}" for x in _check_json_target(t)]
            for q in queries(t):
                for bad in FORBIDDEN:
                    if bad in q:
                        p.append(f"{title}: forbidden {bad!r} in {q}")
                used = set(_VAR.findall(q)) - BUILTIN_MACROS - JSON_MACROS
                if used - set(defined):
                    p.append(f"{title}: undefined variables {sorted(used - set(defined))}")
                allowed = BUILTIN_MACROS | (JSON_MACROS if _is_json(t) else set())
                undefined_macros = {v for v in _VAR.findall(q) if v.startswith("__")} - allowed
                if undefined_macros:
                    p.append(f"{title}: unknown macros {sorted(undefined_macros)}")
                if t.get("datasource", {}).get("type") != "influxdb":
                    continue
                p += [f"{title}: {x}" for x in _check_ratio(q)]
                groups = _TIME_GROUP.findall(q)
                if groups and panel.get("type") in ONE_BUCKET_PANELS:
                    p.append(
                        f"{title}: a {panel['type']} over a bucketed query shows only the last bucket"
                    )
                for g in groups:
                    g = g.strip()
                    daily = g[-1:] in ("d", "w") or g.startswith("$")
                    if daily and f"tz('{zone}')" not in q:
                        p.append(f"{title}: GROUP BY time({g}) without tz('{zone}')")
                    if g.startswith("$"):
                        iv = calculate_interval(
                            LONGEST_RANGE_MS, panel_resolution(panel), panel.get("interval")
                        )
                        if iv.text.endswith("y"):
                            p.append(f"{title}: $__interval becomes {iv.text} (InfluxQL has no y)")
                    elif not re.match(r"^[1-9][0-9]*(ms|s|m|h|d|w)$", g):
                        p.append(f"{title}: GROUP BY time({g}) is not an InfluxQL duration")
    return p


def all_problems(
    dashboards: Mapping[str, Mapping[str, Any]] | None = None,
    datasources: Mapping[str, str] | None = None,
    units: set[str] | None = None,
) -> list[str]:
    """Every problem of every dashboard (empty when all rules hold)."""
    boards = load_dashboards() if dashboards is None else dashboards
    ds = provisioned_datasources() if datasources is None else datasources
    un = known_units() if units is None else units
    out: list[str] = []
    uids: Sequence[str] = [str(b.get("uid")) for b in boards.values()]
    if len(set(uids)) != len(uids):
        out.append(f"dashboard uids are not unique: {uids}")
    for name, board in boards.items():
        out += dashboard_problems(name, board, ds, un)
    return out
