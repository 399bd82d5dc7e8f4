"""The two ways a write body reaches InfluxDB, behind one small seam.

``HttpxV1Poster`` posts to ``/write`` with httpx (async). ``ClientV2Poster`` hands the same bytes to
influxdb-client's ``WriteApi`` (``/api/v2/write``). influxdb-client's own async client needs
aiohttp, which zhizao does not depend on, so its synchronous write API runs in a small thread pool
of ``concurrency`` threads; it does no retrying of its own (``retries=False``), the writer's retry
loop above this seam handles both paths the same way.

Foreign exceptions stop here: connection failures become ``Unreachable`` (translated into
``SinkError`` by the writer, which knows the attempt count), HTTP answers become a ``Reply``.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

import httpx

from ingest.influx.config import InfluxConfig

__all__ = [
    "ClientV2Poster",
    "HttpxV1Poster",
    "Poster",
    "Reply",
    "Unreachable",
    "auth_for",
    "make_poster",
]


@dataclass(frozen=True, slots=True)
class Reply:
    """An HTTP answer: status, headers (lower-case keys), body text."""

    status: int
    headers: Mapping[str, str] = field(default_factory=dict)
    text: str = ""


class Unreachable(Exception):
    """No HTTP answer: connection refused or reset, timeout. ``kind`` names it for metrics."""

    def __init__(self, kind: str, cause: BaseException) -> None:
        self.kind = kind
        self.cause = cause
        super().__init__(f"{type(cause).__name__}: {cause}")


class Poster(Protocol):
    """Sends one request body; knows nothing of retries or line numbers."""

    async def post(self, body: bytes, *, gzipped: bool) -> Reply: ...

    async def create_database(self) -> Reply: ...

    async def aclose(self) -> None: ...


def auth_for(config: InfluxConfig) -> tuple[dict[str, str], httpx.BasicAuth | None]:
    if config.token is not None:
        return {"Authorization": f"Token {config.token.get_secret_value()}"}, None
    if config.username is not None and config.password is not None:
        # basic auth rather than u=/p= query parameters, which end up in access logs
        return {}, httpx.BasicAuth(config.username, config.password.get_secret_value())
    return {}, None


def _quote_ident(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


class HttpxV1Poster:
    """``POST /write?db=&rp=&precision=ns`` over one pooled httpx client."""

    def __init__(
        self, config: InfluxConfig, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self.config = config
        headers, auth = auth_for(config)
        self._client = httpx.AsyncClient(
            base_url=config.url,
            headers=headers,
            auth=auth,
            timeout=config.timeout_s,
            # +1: CREATE DATABASE must not wait behind a full pool of writes
            limits=httpx.Limits(
                max_connections=config.concurrency + 1,
                max_keepalive_connections=config.concurrency + 1,
            ),
            transport=transport,
        )
        params = {"db": config.database, "precision": "ns"}
        if config.retention_policy:
            params["rp"] = config.retention_policy
        self._params = params

    async def _request(self, method: str, url: str, **kwargs: Any) -> Reply:
        try:
            resp = await self._client.request(method, url, **kwargs)
        except httpx.ConnectError as exc:
            raise Unreachable("connect", exc) from exc
        except httpx.TimeoutException as exc:
            raise Unreachable("timeout", exc) from exc
        except httpx.TransportError as exc:  # reset, broken pipe, protocol error
            raise Unreachable("connection", exc) from exc
        return Reply(resp.status_code, resp.headers, resp.text)

    async def post(self, body: bytes, *, gzipped: bool) -> Reply:
        headers = {"Content-Type": "text/plain; charset=utf-8"}
        if gzipped:
            headers["Content-Encoding"] = "gzip"
        return await self._request(
            "POST", "/write", params=self._params, content=body, headers=headers
        )

    async def create_database(self) -> Reply:
        return await self._request(
            "POST", "/query", data={"q": f"CREATE DATABASE {_quote_ident(self.config.database)}"}
        )

    async def aclose(self) -> None:
        await self._client.aclose()


class ClientV2Poster:
    """``/api/v2/write?org=&bucket=&precision=ns`` through influxdb-client's synchronous
    ``WriteApi``, run in a private thread pool."""

    def __init__(self, config: InfluxConfig) -> None:
        from influxdb_client.client.influxdb_client import InfluxDBClient
        from influxdb_client.client.write_api import SYNCHRONOUS
        from influxdb_client.domain.write_precision import WritePrecision

        self.config = config
        kwargs: dict[str, Any] = {}
        if config.username is not None and config.password is not None:
            kwargs = {"username": config.username, "password": config.password.get_secret_value()}
        self._client = InfluxDBClient(
            url=config.url,
            token=config.token.get_secret_value() if config.token is not None else "",
            org=config.org,
            timeout=int(config.timeout_s * 1000),
            enable_gzip=config.gzip,
            retries=False,
            connection_pool_maxsize=config.concurrency,
            **kwargs,
        )
        self._write_api = self._client.write_api(write_options=SYNCHRONOUS)
        self._precision = cast(WritePrecision, WritePrecision.NS)
        self._pool = ThreadPoolExecutor(config.concurrency, thread_name_prefix="influx-v2-write")

    def _write(self, body: bytes) -> None:
        self._write_api.write(
            bucket=self.config.bucket,
            org=self.config.org,
            record=body,
            write_precision=self._precision,
        )

    async def post(self, body: bytes, *, gzipped: bool) -> Reply:
        # influxdb-client compresses by itself when enable_gzip is set; ``gzipped`` is always False
        from influxdb_client.rest import ApiException
        from urllib3.exceptions import HTTPError, NewConnectionError, TimeoutError

        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._pool, functools.partial(self._write, body))
        except ApiException as exc:
            text = exc.body.decode("utf-8", "replace") if isinstance(exc.body, bytes) else exc.body
            headers = {k.lower(): v for k, v in dict(exc.headers or {}).items()}
            return Reply(int(exc.status or 0), headers, str(text or exc.reason or ""))
        except NewConnectionError as exc:  # (a subclass of urllib3's TimeoutError)
            raise Unreachable("connect", exc) from exc
        except TimeoutError as exc:
            raise Unreachable("timeout", exc) from exc
        except HTTPError as exc:  # reset, protocol error
            raise Unreachable("connection", exc) from exc
        return Reply(204)

    async def create_database(self) -> Reply:
        # buckets are created with an admin API and a retention decision; not the writer's job
        return Reply(404, {}, "creating buckets is not supported on api v2")

    async def aclose(self) -> None:
        self._pool.shutdown(wait=True)
        self._write_api.close()  # type: ignore[no-untyped-call]
        self._client.close()  # type: ignore[no-untyped-call]


def make_poster(config: InfluxConfig, transport: httpx.AsyncBaseTransport | None = None) -> Poster:
    if config.api == "v2":
        return ClientV2Poster(config)
    return HttpxV1Poster(config, transport)
