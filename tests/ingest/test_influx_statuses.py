"""Status-code logic of the writer against httpx's MockTransport: 429/503 with Retry-After,
connection errors, give-up, auth headers, gzip. A test double for the HTTP status handling only;
the same paths run against the real InfluxDB in test_influx_write.py."""

from __future__ import annotations

import base64
import gzip

import httpx
import pytest

from ingest.influx import InfluxConfig, InfluxWriter
from zhizao.config import parse_model
from zhizao.errors import ConfigError, SinkError

BODY = b"m,k=a v=1 1\nm,k=a v=2 2\nm,k=b v=3 3\n"


class Recorder:
    """Records requests and backoff waits; answers with a scripted list of responses."""

    def __init__(self, script: list[httpx.Response | Exception]) -> None:
        self.script = script
        self.requests: list[httpx.Request] = []
        self.bodies: list[bytes] = []
        self.sleeps: list[float] = []

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        self.bodies.append(request.read())
        answer = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        if isinstance(answer, Exception):
            raise answer
        return answer

    async def sleep(self, delay_s: float) -> None:
        self.sleeps.append(delay_s)


def writer_for(rec: Recorder, **overrides: object) -> InfluxWriter:
    config = InfluxConfig.model_validate(
        {"url": "http://127.0.0.1:8086", "database": "plant", **overrides}
    )
    return InfluxWriter(config, transport=httpx.MockTransport(rec.handler), sleep=rec.sleep)


async def test_429_and_503_are_retried_honouring_retry_after() -> None:
    rec = Recorder(
        [
            httpx.Response(429, headers={"Retry-After": "7"}, json={"error": "slow down"}),
            httpx.Response(503, headers={"Retry-After": "2"}, text="maintenance"),
            httpx.Response(503, text="still busy"),
            httpx.Response(204),
        ]
    )
    async with writer_for(rec, backoff_initial_s=0.25, backoff_max_s=1.0) as writer:
        report = await writer.write_body(BODY, lines=3, samples=3)
    assert len(rec.requests) == 4
    assert all(b == BODY for b in rec.bodies)  # the same bytes every time
    # Retry-After wins (plus at most 10 % jitter); without it, jittered exponential backoff
    assert 7.0 <= rec.sleeps[0] <= 7.7
    assert 2.0 <= rec.sleeps[1] <= 2.2
    assert 0.5 * 1.0 <= rec.sleeps[2] <= 1.0  # third attempt: min(1.0, 0.25 * 2**2)
    assert report.retries == 3 and report.requests == 4
    assert report.samples_written == 3 and report.lines_written == 3
    assert writer.stats.errors == {"http_429": 1, "http_503": 2}


async def test_connection_errors_retry_then_give_up_with_two_layer_message() -> None:
    rec = Recorder([httpx.ConnectError("[Errno 111] Connection refused")])
    async with writer_for(rec, max_retries=3, backoff_initial_s=0.5, backoff_max_s=30) as writer:
        with pytest.raises(SinkError) as info:
            await writer.write_body(BODY)
    err = info.value
    assert err.retryable
    assert len(rec.requests) == 4
    assert len(rec.sleeps) == 3
    # exponential: each base doubles; equal jitter keeps at least half of it
    for k, delay in enumerate(rec.sleeps):
        assert 0.5 * 2**k * 0.5 <= delay <= 0.5 * 2**k
    assert "after 4 attempts" in err.message
    assert "127.0.0.1:8086" in (err.detail or "")
    assert "Connection refused" in (err.detail or "")
    assert writer.stats.errors == {"connect": 4}
    assert writer.stats.samples_written == 0


async def test_timeouts_and_resets_are_retried() -> None:
    rec = Recorder(
        [
            httpx.ReadTimeout("timed out"),
            httpx.RemoteProtocolError("server disconnected"),
            httpx.Response(204),
        ]
    )
    async with writer_for(rec) as writer:
        report = await writer.write_body(BODY)
    assert report.retries == 2
    assert writer.stats.errors == {"timeout": 1, "connection": 1}


@pytest.mark.parametrize("status", [401, 403, 413])
async def test_client_errors_are_not_retried(status: int) -> None:
    rec = Recorder([httpx.Response(status, json={"error": "nope"})])
    async with writer_for(rec) as writer:
        with pytest.raises(SinkError) as info:
            await writer.write_body(BODY)
    assert not info.value.retryable
    assert info.value.status == status
    assert len(rec.requests) == 1


async def test_v1_request_shape_with_token_and_gzip() -> None:
    rec = Recorder([httpx.Response(204)])
    async with writer_for(rec, token="s3cret", gzip=True, retention_policy="raw") as writer:
        await writer.write_body(BODY)
    (request,) = rec.requests
    assert request.url.path == "/write"
    assert dict(request.url.params) == {"db": "plant", "rp": "raw", "precision": "ns"}
    assert request.headers["authorization"] == "Token s3cret"
    assert request.headers["content-encoding"] == "gzip"
    assert gzip.decompress(rec.bodies[0]) == BODY


async def test_v1_basic_auth_header() -> None:
    rec = Recorder([httpx.Response(204)])
    async with writer_for(rec, username="ingest", password="pa:ss") as writer:
        await writer.write_body(BODY)
    expected = "Basic " + base64.b64encode(b"ingest:pa:ss").decode()
    assert rec.requests[0].headers["authorization"] == expected
    assert "u" not in rec.requests[0].url.params and "p" not in rec.requests[0].url.params


async def test_requests_are_bounded_by_lines_and_bytes() -> None:
    rec = Recorder([httpx.Response(204)])
    body = b"".join(b"m v=%d %d\n" % (i, i) for i in range(10_000))
    async with writer_for(rec, max_lines_per_request=1000, max_bytes_per_request=5000) as w:
        report = await w.write_body(body, lines=10_000)
    assert all(len(b) <= 5000 and b.count(b"\n") <= 1000 for b in rec.bodies)
    # every line sent exactly once, whatever order the concurrent requests went out in
    first_ts = [int(b.split(b"\n", 1)[0].split(b" ")[2]) for b in rec.bodies]
    assert b"".join(b for _, b in sorted(zip(first_ts, rec.bodies, strict=True))) == body
    assert report.lines_written == 10_000
    assert report.requests == len(rec.requests) > 10


async def test_404_without_influx_wording_points_at_the_url() -> None:
    rec = Recorder([httpx.Response(404, text="404 page not found")])
    async with writer_for(rec) as writer:
        with pytest.raises(ConfigError) as info:
            await writer.write_body(BODY)
    assert info.value.key == "url"
    assert len(rec.requests) == 1


async def test_missing_retention_policy_500_is_a_config_error_not_retried() -> None:
    rec = Recorder([httpx.Response(500, json={"error": "retention policy not found: raw"})])
    async with writer_for(rec, retention_policy="raw") as writer:
        with pytest.raises(ConfigError) as info:
            await writer.write_body(BODY)
    assert info.value.key == "retention_policy"
    assert len(rec.requests) == 1


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        ({"database": ""}, None),
        ({"api": "v2", "database": ""}, None),
        ({"url": "ftp://x"}, "url"),
        ({"token": "t", "username": "u", "password": "p"}, None),
        ({"username": "u"}, None),
        ({"max_bytes_per_request": 30_000_000}, "max_bytes_per_request"),
        ({"precision": "us"}, "precision"),
    ],
)
def test_bad_config_is_a_config_error(overrides: dict[str, object], key: str | None) -> None:
    data = {"url": "http://127.0.0.1:8086", "database": "plant", **overrides}
    with pytest.raises(ConfigError) as info:
        parse_model(InfluxConfig, data, file="influx.yaml")
    assert info.value.file == "influx.yaml"
    if key is not None:
        assert info.value.key == key


def test_secrets_stay_out_of_repr() -> None:
    config = InfluxConfig.model_validate(
        {"url": "http://127.0.0.1:8086", "database": "d", "token": "s3cret"}
    )
    assert "s3cret" not in repr(config)


def test_sample_config_parses() -> None:
    from pathlib import Path

    import ingest.influx
    from zhizao.config import load_model

    sample = Path(ingest.influx.__file__).parent / "influx.sample.yaml"
    config = load_model(InfluxConfig, sample)
    assert (config.api, config.database, config.concurrency) == ("v1", "factory", 4)
    assert config.max_bytes_per_request < 25_000_000
