"""``InfluxQLReader``: InfluxQL over ``/query``, results as numpy columns.

Times come back as int64 nanoseconds (``epoch=ns``). A column becomes int64 when every value is an
integer, float64 when values are numbers (nulls become NaN), bool when every value is a boolean,
and object otherwise (strings; booleans or integers with nulls keep their None). Bind parameters
(``$name`` in the query, ``params={"name": value}``) are sent as InfluxDB's ``params`` JSON, so
values are never pasted into query text.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import httpx
import numpy as np
import orjson
from numpy.typing import NDArray

from ingest.influx.config import InfluxConfig
from ingest.influx.responses import error_text
from ingest.influx.transport import auth_for
from zhizao.errors import QueryError

__all__ = ["InfluxQLReader", "ResultSeries"]


@dataclass(frozen=True, slots=True)
class ResultSeries:
    """One series of one statement's result. ``columns`` is InfluxDB's column list (``time``
    first when present); ``values`` holds every column except ``time``, which is ``time_ns``
    (empty when the result has no time column, e.g. ``SHOW`` statements)."""

    name: str
    tags: dict[str, str]
    columns: list[str]
    time_ns: NDArray[np.int64]
    values: dict[str, NDArray[Any]]
    statement_id: int = 0

    def __len__(self) -> int:
        return len(next(iter(self.values.values()))) if self.values else len(self.time_ns)


@dataclass
class _Rows:
    name: str
    tags: dict[str, str]
    columns: list[str]
    statement_id: int
    rows: list[list[Any]] = field(default_factory=list)


def _column(values: NDArray[np.object_]) -> NDArray[Any]:
    kinds = set(map(type, values.tolist()))
    has_null = type(None) in kinds
    kinds.discard(type(None))
    if not kinds:
        return np.full(len(values), np.nan)
    if kinds == {int} and not has_null:
        try:
            return values.astype(np.int64)
        except OverflowError:  # unsigned fields above 2**63 stay exact as Python ints
            return values
    if kinds <= {int, float}:
        # numpy turns None into NaN when asked for float64
        return np.array(values.tolist(), dtype=np.float64)
    if kinds == {bool} and not has_null:
        return values.astype(np.bool_)
    return values


def _series(rows: _Rows) -> ResultSeries:
    ncol = len(rows.columns)
    table = np.empty((len(rows.rows), ncol), dtype=object)
    if rows.rows:
        table[:, :] = rows.rows
    columns: dict[str, NDArray[Any]] = {}
    time_ns = np.empty(0, np.int64)
    for j, name in enumerate(rows.columns):
        if name == "time" and j == 0:
            time_ns = table[:, 0].astype(np.int64)
        else:
            columns[name] = _column(table[:, j])
    return ResultSeries(rows.name, rows.tags, rows.columns, time_ns, columns, rows.statement_id)


def split_statements(q: str) -> list[str]:
    """Statements of ``q`` split at ``;`` outside quotes (for naming the one that failed)."""
    out: list[str] = []
    start = 0
    quote: str | None = None
    escaped = False
    for i, ch in enumerate(q):
        if escaped:
            escaped = False
        elif ch == "\\":
            escaped = True
        elif quote:
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch == ";":
            out.append(q[start:i].strip())
            start = i + 1
    tail = q[start:].strip()
    if tail:
        out.append(tail)
    return out


class InfluxQLReader:
    """Runs InfluxQL against ``config.url`` (database ``config.database``, or ``config.bucket``
    through a 2.x DBRP mapping); ``async with InfluxQLReader(config) as reader``."""

    def __init__(
        self, config: InfluxConfig, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self.config = config
        headers, auth = auth_for(config)
        self._client = httpx.AsyncClient(
            base_url=config.url,
            headers=headers,
            auth=auth,
            timeout=config.timeout_s,
            transport=transport,
        )

    async def __aenter__(self) -> InfluxQLReader:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._client.aclose()

    async def query(
        self,
        q: str,
        params: Mapping[str, Any] | None = None,
        *,
        database: str | None = None,
        chunked: bool = False,
        chunk_size: int = 10_000,
    ) -> list[ResultSeries]:
        """Every series of every statement in ``q``, in order. Raises ``QueryError`` naming the
        failing statement."""
        db = database if database is not None else (self.config.database or self.config.bucket)
        url_params: dict[str, str] = {"epoch": "ns"}
        if db:
            url_params["db"] = db
        if self.config.retention_policy:
            url_params["rp"] = self.config.retention_policy
        if chunked:
            url_params["chunked"] = "true"
            url_params["chunk_size"] = str(chunk_size)
        form = {"q": q}
        if params:
            form["params"] = orjson.dumps(dict(params)).decode()
        where = self.config.host_port
        try:
            # POST: works for reads and writes (CREATE, SELECT INTO) on 1.x, 2.x and 3.x, and long
            # queries do not hit URL length limits
            async with self._client.stream("POST", "/query", params=url_params, data=form) as resp:
                if resp.status_code >= 300:
                    text = error_text(await resp.aread())
                    raise QueryError(
                        f"InfluxDB refused the query (HTTP {resp.status_code}): {text}",
                        detail=f"{where}, query: {q[:500]}",
                    )
                documents = []
                if chunked:
                    async for line in resp.aiter_lines():
                        if line.strip():
                            documents.append(orjson.loads(line))
                else:
                    documents.append(orjson.loads(await resp.aread()))
        except httpx.HTTPError as exc:
            raise QueryError(
                "InfluxDB cannot be reached for a query",
                detail=f"{where}: {type(exc).__name__}: {exc}",
            ) from exc
        except orjson.JSONDecodeError as exc:
            raise QueryError(
                "InfluxDB answered a query with something that is not JSON",
                detail=f"{where}: {exc}",
            ) from exc
        return self._collect(documents, q)

    def _collect(self, documents: list[Any], q: str) -> list[ResultSeries]:
        merged: list[_Rows] = []
        open_series: dict[tuple[int, str, tuple[tuple[str, str], ...]], _Rows] = {}
        for doc in documents:
            if isinstance(doc, dict) and isinstance(doc.get("error"), str):
                raise QueryError(f"InfluxQL query failed: {doc['error']}", detail=q[:500])
            for result in doc.get("results", []):
                sid = int(result.get("statement_id", 0))
                if "error" in result:
                    statements = split_statements(q)
                    text = statements[sid] if sid < len(statements) else q
                    raise QueryError(
                        f"InfluxQL statement {sid + 1} failed: {result['error']}",
                        detail=f"{self.config.host_port}, statement: {text[:500]}",
                    )
                for s in result.get("series", []):
                    tags = dict(s.get("tags") or {})
                    key = (sid, str(s.get("name", "")), tuple(sorted(tags.items())))
                    rows = open_series.get(key)
                    if rows is None or rows.columns != s["columns"]:
                        rows = _Rows(str(s.get("name", "")), tags, list(s["columns"]), sid)
                        merged.append(rows)
                    rows.rows.extend(s.get("values") or [])
                    # a chunked series continues in the next document only when marked partial
                    if s.get("partial"):
                        open_series[key] = rows
                    else:
                        open_series.pop(key, None)
        return [_series(rows) for rows in merged]
