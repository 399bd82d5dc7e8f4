"""Run a dashboard's queries as Grafana would on a refresh: variables first (each with its parents'
values), then every panel's targets concurrently, after Grafana's macro substitution
(``dashboards.grafana``), against a real InfluxDB (InfluxQL ``/query``), a Prometheus API
(VictoriaMetrics ``/api/v1/query_range``) and the zhizao API as Grafana's Infinity JSON
datasource reads it (GET with the datasource's bearer token, rows at ``root_selector``, one column
per ``selector``; the dashboards use field paths only, which ``checks`` enforces, so the
selection is the plugin's). Used by the query tests and the benchmark.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from dashboards import grafana
from dashboards.checks import iter_panels

__all__ = [
    "QueryContext",
    "QueryResult",
    "datasource_settings",
    "reduce_panel",
    "resolve_variables",
    "run_dashboard",
]

PROVISIONED = Path(__file__).resolve().parent / "provisioning" / "datasources"
_LABEL_VALUES = re.compile(r"^label_values\((?:(.+),\s*)?([A-Za-z_][A-Za-z0-9_]*)\)$")


def datasource_settings(directory: Path = PROVISIONED) -> dict[str, dict[str, Any]]:
    """uid -> ``jsonData`` of the provisioned datasources (``timeInterval`` is what Grafana uses
    as the lower limit of ``$__interval`` and as Prometheus's scrape interval)."""
    out: dict[str, dict[str, Any]] = {}
    for path in sorted(directory.glob("*.yaml")):
        for ds in yaml.safe_load(path.read_text(encoding="utf-8")).get("datasources", []):
            out[str(ds["uid"])] = dict(ds.get("jsonData") or {})
    return out


@dataclass(frozen=True, slots=True)
class QueryContext:
    """Where the queries go and the dashboard's time range (epoch ms, both ends included)."""

    influx_url: str
    database: str
    from_ms: int
    to_ms: int
    prometheus_url: str | None = None
    api_url: str | None = None  # the Infinity datasource's URL (the zhizao API)
    api_token: str | None = None  # its bearer token (a commission token)
    viewport_px: int = grafana.VIEWPORT_PX
    timeout_s: float = 60.0


@dataclass
class QueryResult:
    """One target's answer: InfluxDB series (``name, tags, columns, values``) or Prometheus
    series (``metric, values``)."""

    dashboard: str
    panel_id: int
    panel: str
    panel_type: str
    ref: str
    kind: str  # "influxql", "promql" or "json" (Infinity)
    query: str
    series: list[dict[str, Any]] = field(default_factory=list)
    elapsed_s: float = 0.0
    error: str | None = None
    calc: str = "lastNotNull"  # the panel's reducer (stat, gauge, bar gauge)

    @property
    def points(self) -> int:
        return sum(len(s.get("values", [])) for s in self.series)

    def column(self, name: str) -> list[float | None]:
        """One column over every series (InfluxDB), nulls kept."""
        out: list[float | None] = []
        for s in self.series:
            if name in s.get("columns", []):
                i = s["columns"].index(name)
                out += [None if row[i] is None else float(row[i]) for row in s["values"]]
        return out

    def by_tags(self, name: str) -> dict[tuple[tuple[str, str], ...], list[Any]]:
        """One column per series (values as stored: numbers, strings, booleans), keyed by the
        series' tags."""
        out: dict[tuple[tuple[str, str], ...], list[Any]] = {}
        for s in self.series:
            if name in s.get("columns", []):
                i = s["columns"].index(name)
                key = tuple(sorted((s.get("tags") or {}).items()))
                out[key] = [row[i] for row in s["values"]]
        return out


async def _influx(client: httpx.AsyncClient, ctx: QueryContext, q: str) -> list[dict[str, Any]]:
    resp = await client.get(
        f"{ctx.influx_url}/query",
        params={"db": ctx.database, "q": q, "epoch": "ms"},
        timeout=ctx.timeout_s,
    )
    body = resp.json()
    if resp.status_code != 200 or "error" in body:
        raise RuntimeError(f"InfluxDB answered {resp.status_code}: {body.get('error', body)}")
    results = body.get("results", [])
    for r in results:
        if "error" in r:
            raise RuntimeError(f"InfluxDB refused the query: {r['error']}")
    return [s for r in results for s in r.get("series", [])]


async def _prom(
    client: httpx.AsyncClient, ctx: QueryContext, expr: str, step_s: float
) -> list[dict[str, Any]]:
    if not ctx.prometheus_url:
        raise RuntimeError("no Prometheus URL for a Prometheus target")
    resp = await client.post(
        f"{ctx.prometheus_url}/api/v1/query_range",
        data={
            "query": expr,
            "start": f"{ctx.from_ms / 1000:.3f}",
            "end": f"{ctx.to_ms / 1000:.3f}",
            "step": f"{max(step_s, 0.001):g}",
        },
        timeout=ctx.timeout_s,
    )
    body = resp.json()
    if resp.status_code != 200 or body.get("status") != "success":
        raise RuntimeError(f"Prometheus API answered {resp.status_code}: {body.get('error', body)}")
    return list(body["data"]["result"])


INFINITY = "yesoreyeram-infinity-datasource"


def _select(obj: Any, path: str) -> Any:
    """A field path (``a.b.0``) into parsed JSON; missing -> None."""
    if not path:
        return obj
    for part in path.split("."):
        if isinstance(obj, Mapping):
            obj = obj.get(part)
        elif isinstance(obj, list) and part.isdigit() and int(part) < len(obj):
            obj = obj[int(part)]
        else:
            return None
    return obj


def _cast(value: Any, kind: str) -> Any:
    """A JSON value as the plugin's column type makes it (null stays null)."""
    if value is None:
        return None
    if kind == "number":
        return (
            float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
        )
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else json.dumps(value)


async def _json_api(
    client: httpx.AsyncClient,
    ctx: QueryContext,
    target: Mapping[str, Any],
    variables: Mapping[str, Sequence[str]],
) -> tuple[str, list[dict[str, Any]]]:
    if not ctx.api_url:
        raise RuntimeError("no API URL for a JSON (Infinity) target")
    rng = {"from_ms": ctx.from_ms, "to_ms": ctx.to_ms}
    path = grafana.interpolate_text(str(target["url"]), variables, **rng)
    params: list[tuple[str, str | int | float | bool | None]] = [
        (str(p["key"]), grafana.interpolate_text(str(p["value"]), variables, **rng))
        for p in target.get("url_options", {}).get("params", [])
    ]
    headers = {"Authorization": f"Bearer {ctx.api_token}"} if ctx.api_token else {}
    resp = await client.get(
        ctx.api_url.rstrip("/") + path,
        params=params,
        headers=headers,
        timeout=ctx.timeout_s,
    )
    shown = str(resp.request.url)
    if resp.status_code != 200:
        raise RuntimeError(f"the API answered {resp.status_code} to {shown}: {resp.text[:300]}")
    rows = _select(resp.json(), str(target.get("root_selector", "")))
    if isinstance(rows, Mapping):
        rows = [rows]
    if not isinstance(rows, list):
        raise RuntimeError(f"{shown}: no rows at {target.get('root_selector')!r}")
    cols = list(target.get("columns", []))
    values = [[_cast(_select(r, str(c["selector"])), str(c["type"])) for c in cols] for r in rows]
    return shown, [
        {"name": str(target.get("refId")), "columns": [c["text"] for c in cols], "values": values}
    ]


async def resolve_variables(
    board: Mapping[str, Any],
    ctx: QueryContext,
    client: httpx.AsyncClient,
    choose: Mapping[str, Sequence[str]] | None = None,
) -> dict[str, list[str]]:
    """Each variable's options from its query (with the parents' values substituted); the value
    is ``choose[name]`` if given, else All (every option) for multi-value variables, else the
    first option (Grafana's default)."""
    values: dict[str, list[str]] = {}
    iv = grafana.calculate_interval(ctx.to_ms - ctx.from_ms, 1000)
    for var in board.get("templating", {}).get("list", []):
        name = str(var["name"])
        q = var.get("query", "")
        text = str(q.get("query", "")) if isinstance(q, Mapping) else str(q)
        if var.get("datasource", {}).get("type") == INFINITY:
            _, series = await _json_api(client, ctx, q["infinityQuery"], values)
            cols = series[0]["columns"]
            options = [str(row[cols.index("__value")]) for row in series[0]["values"]]
        elif var.get("datasource", {}).get("type") == "prometheus":
            m = _LABEL_VALUES.match(text.strip())
            if not m or not ctx.prometheus_url:
                raise RuntimeError(f"variable {name}: cannot run {text!r}")
            params: dict[str, str] = {
                "start": f"{ctx.from_ms / 1000:.3f}",
                "end": f"{ctx.to_ms / 1000:.3f}",
            }
            if m.group(1):
                params["match[]"] = m.group(1)
            resp = await client.get(
                f"{ctx.prometheus_url}/api/v1/label/{m.group(2)}/values", params=params
            )
            options = [str(v) for v in resp.json()["data"]]
        else:
            q2 = grafana.interpolate_influxql(
                text, from_ms=ctx.from_ms, to_ms=ctx.to_ms, interval=iv, variables=values
            )
            series = await _influx(client, ctx, q2)
            options = sorted({str(row[1]) for s in series for row in s["values"]})
        if not options:
            raise RuntimeError(f"variable {name} has no values ({text})")
        if choose and name in choose:
            values[name] = list(choose[name])
        elif var.get("multi") or var.get("includeAll"):
            values[name] = options
        else:
            values[name] = options[:1]
    return values


async def _run_target(
    client: httpx.AsyncClient,
    ctx: QueryContext,
    board: Mapping[str, Any],
    panel: Mapping[str, Any],
    target: Mapping[str, Any],
    variables: Mapping[str, Sequence[str]],
    settings: Mapping[str, Mapping[str, Any]],
) -> QueryResult:
    ds = target.get("datasource") or panel.get("datasource") or {}
    kind = {"prometheus": "promql", INFINITY: "json"}.get(str(ds.get("type")), "influxql")
    json_data = settings.get(str(ds.get("uid")), {})
    low = panel.get("interval") or json_data.get("timeInterval")
    iv = grafana.calculate_interval(
        ctx.to_ms - ctx.from_ms, grafana.panel_resolution(panel, ctx.viewport_px), low
    )
    if kind == "promql":
        query = grafana.interpolate_promql(
            str(target["expr"]),
            from_ms=ctx.from_ms,
            to_ms=ctx.to_ms,
            interval=iv,
            scrape_interval=str(json_data.get("timeInterval", "15s")),
            variables=variables,
        )
    elif kind == "influxql":
        query = grafana.interpolate_influxql(
            str(target["query"]), from_ms=ctx.from_ms, to_ms=ctx.to_ms, interval=iv,
            variables=variables,
        )  # fmt: skip
    else:
        query = str(target["url"])  # the URL actually asked replaces it below
    calcs = panel.get("options", {}).get("reduceOptions", {}).get("calcs") or ["lastNotNull"]
    res = QueryResult(
        str(board.get("uid")),
        int(panel["id"]),
        grafana.interpolate_text(str(panel.get("title")), variables)
        if kind == "json"
        else str(panel.get("title")),
        str(panel.get("type")),
        str(target.get("refId")),
        kind,
        query,
        calc=str(calcs[0]),
    )
    t0 = time.perf_counter()
    try:
        if kind == "promql":
            res.series = await _prom(client, ctx, query, iv.ms / 1000)
        elif kind == "influxql":
            res.series = await _influx(client, ctx, query)
        else:
            res.query, res.series = await _json_api(client, ctx, target, variables)
    except (RuntimeError, httpx.HTTPError, ValueError) as exc:
        res.error = str(exc)
    res.elapsed_s = time.perf_counter() - t0
    return res


async def run_dashboard(
    board: Mapping[str, Any],
    ctx: QueryContext,
    choose: Mapping[str, Sequence[str]] | None = None,
    *,
    client: httpx.AsyncClient | None = None,
    variables: Mapping[str, Sequence[str]] | None = None,
) -> list[QueryResult]:
    """Every target of every panel, all at once (as a dashboard refresh sends them)."""
    settings = datasource_settings()
    own = client is None
    c = client or httpx.AsyncClient(limits=httpx.Limits(max_connections=64))
    try:
        values = (
            dict(variables)
            if variables is not None
            else await resolve_variables(board, ctx, c, choose)
        )
        jobs = [
            _run_target(c, ctx, board, panel, target, values, settings)
            for panel in iter_panels(board)
            for target in panel.get("targets", [])
        ]
        return list(await asyncio.gather(*jobs))
    finally:
        if own:
            await c.aclose()


def reduce_panel(
    results: Sequence[QueryResult], panel: str, column: str, calc: str | None = None
) -> dict[tuple[tuple[str, str], ...], float | None]:
    """The values a panel shows for one column, one per series (keyed by its tags), reduced as
    Grafana reduces them: ``calc`` (``lastNotNull``, ``sum``, ``mean`` ...), default the panel's
    own ``reduceOptions.calcs[0]``. For comparing key panels with the API's answers."""
    mine = [r for r in results if r.panel == panel]
    if not mine:
        raise KeyError(f"no results for panel {panel!r}")
    out: dict[tuple[tuple[str, str], ...], float | None] = {}
    for r in mine:
        how = calc or r.calc
        for key, values in r.by_tags(column).items():
            nums = [None if v is None else float(v) for v in values]
            out[key] = grafana.reduce(nums, how)
    return out
