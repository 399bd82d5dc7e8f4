"""What Grafana does to a panel's query before it reaches the datasource, and to its result after.

Grafana cannot be installed here, so the tests and the benchmark run every panel's query after
this emulation: the interval (``$__interval``, ``$__interval_ms``) that Grafana derives from the
time range and the panel's width (``rangeutil.calculateInterval``), the InfluxQL datasource's
``$timeFilter``, Prometheus's ``$__rate_interval`` and ``$__range``, multi-value variables as a
regular expression, and the reducers of stat panels (``lastNotNull``, ``sum``, ...). Interval and
reducers are checked against values computed with Grafana's own ``@grafana/data``
(``dashboards/reference/grafana_reference.json``, made by ``make_reference.cjs``).
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

__all__ = [
    "GRID_COLUMNS",
    "VIEWPORT_PX",
    "Interval",
    "calculate_interval",
    "interpolate_influxql",
    "interpolate_promql",
    "interpolate_text",
    "interval_to_ms",
    "panel_resolution",
    "rate_interval_ms",
    "reduce",
    "regex_value",
    "round_interval",
    "seconds_to_hms",
]

GRID_COLUMNS = 24
GRID_MARGIN_PX = 8  # react-grid-layout margin between cells (Grafana GRID_CELL_VMARGIN)
PANEL_PADDING_PX = 8  # PanelChrome's content padding on each side
VIEWPORT_PX = 1920  # the dashboard width the emulation assumes (a full-HD screen)

_INTERVAL = re.compile(r"^(-?\d+(?:\.\d+)?)(ms|[Mwdhmsy])")
_SECONDS = {
    "y": 31536e3,
    "M": 2592e3,
    "w": 604800,
    "d": 86400,
    "h": 3600,
    "m": 60,
    "s": 1,
    "ms": 1e-3,
}
# rangeutil.roundInterval: (upper bound of the raw interval in ms, rounded interval in ms)
_ROUND: tuple[tuple[float, int], ...] = (
    (10, 1), (15, 10), (35, 20), (75, 50), (150, 100), (350, 200), (750, 500), (1500, 1000),
    (3500, 2000), (7500, 5000), (12500, 10000), (17500, 15000), (25000, 20000), (45000, 30000),
    (90000, 60000), (210000, 120000), (450000, 300000), (750000, 600000), (1050000, 900000),
    (1500000, 1200000), (2700000, 1800000), (5400000, 3600000), (9000000, 7200000),
    (16200000, 10800000), (32400000, 21600000), (86400000, 43200000), (604800000, 86400000),
    (1814400000, 604800000), (3628800000, 2592000000),
)  # fmt: skip
_YEAR_MS = 31536000000


@dataclass(frozen=True, slots=True)
class Interval:
    """``$__interval`` (text as InfluxQL and PromQL receive it) and ``$__interval_ms``."""

    ms: int
    text: str


def round_interval(interval_ms: float) -> int:
    for upper, rounded in _ROUND:
        if interval_ms < upper:
            return rounded
    return _YEAR_MS


def seconds_to_hms(seconds: float) -> str:
    """Grafana's interval text: the largest whole unit only (``90 s`` -> ``1m``)."""
    years = math.floor(seconds / 31536e3)
    if years:
        return f"{years}y"
    rest = seconds % 31536e3
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        n = math.floor(rest / size)
        if n:
            return f"{n}{unit}"
        rest %= size
    ms = math.floor(seconds * 1e3)
    return f"{ms}ms" if ms else "less than a millisecond"


def interval_to_ms(text: str) -> float:
    """``10s`` -> 10000 (a unit-less number is seconds)."""
    try:
        if float(text):
            return int(float(text)) * 1000.0
    except ValueError:
        pass
    m = _INTERVAL.match(text)
    if not m:
        raise ValueError(
            f"{text!r} is not a Grafana interval (a number and ms, s, m, h, d, w, M or y)"
        )
    return _SECONDS[m.group(2)] * 1000 * int(float(m.group(1)))


def calculate_interval(
    range_ms: float, resolution: float, low_limit: str | None = None
) -> Interval:
    """``rangeutil.calculateInterval``: range / resolution, rounded, at least the low limit (the
    panel's ``interval`` or the datasource's ``timeInterval``)."""
    low = interval_to_ms(low_limit) if low_limit else 1
    ms = round_interval(range_ms / resolution)
    if low > ms:
        ms = int(low)
    return Interval(int(ms), seconds_to_hms(ms / 1e3))


def panel_resolution(panel: Mapping[str, object], viewport_px: int = VIEWPORT_PX) -> int:
    """The ``maxDataPoints`` Grafana asks for: the panel's own setting, else its width in pixels
    on a dashboard ``viewport_px`` wide (24 columns, 8 px margins, 8 px content padding)."""
    mdp = panel.get("maxDataPoints")
    if isinstance(mdp, int | float) and mdp > 0:
        return int(mdp)
    grid = panel.get("gridPos")
    w = int(grid.get("w", 12)) if isinstance(grid, Mapping) else 12
    col = (viewport_px - GRID_MARGIN_PX * (GRID_COLUMNS - 1)) / GRID_COLUMNS
    return max(1, math.floor(col * w + GRID_MARGIN_PX * (w - 1) - 2 * PANEL_PADDING_PX))


def rate_interval_ms(interval_ms: int, scrape_interval: str) -> int:
    """Prometheus ``$__rate_interval``: max(interval + scrape interval, 4 x scrape interval)."""
    scrape = interval_to_ms(scrape_interval)
    return int(max(interval_ms + scrape, 4 * scrape))


_REGEX_SPECIAL = re.compile(r"[\\^$*+?.()|{}\[\]/]")


def regex_value(values: Sequence[str], *, in_string: bool = False) -> str:
    """A multi-value (or All) variable inside ``=~ /^$var$/``: ``(a|b)``, each value escaped;
    ``in_string``: inside a PromQL string literal, where the escaping backslash is doubled."""
    slash = "\\\\" if in_string else "\\"
    escaped = [_REGEX_SPECIAL.sub(lambda m: slash + m.group(0), v) for v in values]
    if len(escaped) == 1:
        return escaped[0]
    return "(" + "|".join(escaped) + ")"


def _variables(
    text: str, variables: Mapping[str, Sequence[str]], *, in_string: bool = False
) -> str:
    # longest names first, so $machine_type is not read as $machine + "_type"
    for name in sorted(variables, key=len, reverse=True):
        value = regex_value(variables[name], in_string=in_string)
        text = text.replace("${" + name + "}", value).replace("$" + name, value)
    return text


def interpolate_influxql(
    query: str,
    *,
    from_ms: int,
    to_ms: int,
    interval: Interval,
    variables: Mapping[str, Sequence[str]],
) -> str:
    """A raw InfluxQL query as Grafana's InfluxDB datasource sends it: template variables first
    (regex form), then ``$timeFilter`` (``time >= <from>ms and time <= <to>ms``, both ends
    included), ``$interval``, ``$__interval_ms`` and ``$__interval``."""
    q = _variables(query, variables)
    q = q.replace("$timeFilter", f"time >= {from_ms}ms and time <= {to_ms}ms")
    q = q.replace("$interval", interval.text)
    q = q.replace("$__interval_ms", str(interval.ms))
    return q.replace("$__interval", interval.text)


_FORMATTED = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*):([a-z]+)(?::([a-z]+))?\}")


def _iso_ms(ms: int) -> str:
    """``${__from:date:iso}`` as Grafana writes it: UTC, milliseconds, ``Z``."""
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


def interpolate_text(
    text: str,
    variables: Mapping[str, Sequence[str]],
    *,
    from_ms: int | None = None,
    to_ms: int | None = None,
) -> str:
    """Variables in a plain text (a JSON datasource's URL and query parameters), as Grafana's
    template service writes them: ``${var:csv}`` the values joined by commas (All: every value),
    ``${__from:date:iso}`` / ``${__to:date:iso}`` the range's ends in ISO 8601 UTC, and a plain
    ``$var`` / ``${var}`` a single value as it is (the datasource URL-encodes the parameters
    afterwards). A multi-value variable without a format has no plain form here: refused."""

    def formatted(m: re.Match[str]) -> str:
        name, fmt, arg = m.group(1), m.group(2), m.group(3)
        if name in ("__from", "__to") and fmt == "date" and arg == "iso":
            ms = from_ms if name == "__from" else to_ms
            if ms is None:
                raise ValueError(f"${{{name}:date:iso}} needs the time range")
            return _iso_ms(ms)
        if fmt == "csv" and arg is None and name in variables:
            return ",".join(variables[name])
        raise ValueError(f"unsupported variable format {m.group(0)}")

    text = _FORMATTED.sub(formatted, text)
    for name in sorted(variables, key=len, reverse=True):
        if "$" + name not in text and "${" + name + "}" not in text:
            continue
        values = list(variables[name])
        if len(values) != 1:
            raise ValueError(f"${name} has {len(values)} values; a URL needs exactly one")
        text = text.replace("${" + name + "}", values[0]).replace("$" + name, values[0])
    return text


def interpolate_promql(
    expr: str,
    *,
    from_ms: int,
    to_ms: int,
    interval: Interval,
    scrape_interval: str,
    variables: Mapping[str, Sequence[str]],
) -> str:
    """A PromQL expression with Grafana's range macros and variables substituted."""
    rate = rate_interval_ms(interval.ms, scrape_interval)
    range_s = max(1, (to_ms - from_ms) // 1000)
    e = expr.replace("$__rate_interval", f"{rate}ms")
    e = e.replace("$__range_s", str(range_s)).replace("$__range_ms", str(to_ms - from_ms))
    e = e.replace("$__range", f"{range_s}s")
    e = e.replace("$__interval_ms", str(interval.ms)).replace("$__interval", interval.text)
    return _variables(e, variables, in_string=True)


def _num(v: float | None) -> bool:
    return v is not None and not (isinstance(v, float) and math.isnan(v))


def reduce(values: Sequence[float | None], calc: str) -> float | None:
    """A field reduced as Grafana's stat, gauge and table panels reduce it (``fieldReducers``):
    ``lastNotNull``, ``last``, ``firstNotNull``, ``first``, ``sum``, ``mean``, ``max``, ``min``,
    ``count``, ``nonNullCount``, ``range``, ``diff``, ``delta``. None where Grafana has no number."""
    vals = list(values)
    nums = [float(v) for v in vals if v is not None and _num(v)]
    if calc == "lastNotNull":
        return nums[-1] if nums else None
    if calc == "firstNotNull":
        return nums[0] if nums else None
    if calc == "last":
        last = vals[-1] if vals else None
        return float(last) if last is not None and _num(last) else None
    if calc == "first":
        first = vals[0] if vals else None
        return float(first) if first is not None and _num(first) else None
    if calc == "sum":
        return float(sum(nums))
    if calc == "count":  # nulls are ignored, NaN counts
        return float(sum(v is not None for v in vals))
    if calc == "nonNullCount":
        return float(len(nums)) if vals else None
    if calc == "mean":
        return sum(nums) / len(nums) if nums else None
    if calc == "max":
        return max(nums) if nums else None
    if calc == "min":
        return min(nums) if nums else None
    if calc == "range":
        return max(nums) - min(nums) if nums else None
    if calc == "diff":
        return nums[-1] - nums[0] if nums else None
    if calc == "delta":
        # Grafana's rule: rises count while the series keeps rising; a drop (a reset) stops
        # counting until the next rise after a rise
        if not vals:
            return None
        total, up = 0.0, True
        for prev, cur in itertools.pairwise(nums):
            if prev > cur:
                up = False
            else:
                if up:
                    total += cur - prev
                up = True
        return total
    raise ValueError(f"unknown reducer {calc!r}")
