"""zhizao.logs: JSON lines with extra fields, the same redaction in both formats."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from zhizao.errors import ConfigError
from zhizao.localstack import free_port
from zhizao.logs import JsonFormatter, TextFormatter, configure_logging, redact, token_fingerprint

TOKEN = "zz_" + "A1b2C3d4" * 5 + "xyz"


@pytest.mark.parametrize(
    ("text", "leak"),
    [
        (f"Authorization: Bearer {TOKEN}", TOKEN),
        (f"token was {TOKEN}", TOKEN),
        ("Bearer abcdefghijkl", "abcdefghijkl"),
        ("postgresql+psycopg://zhizao:s3cr3t-pw@127.0.0.1/api", "s3cr3t-pw"),
        ("mqtt://gw1:hunter22@127.0.0.1:1883", "hunter22"),
        ("password=hunter22 user=gw1", "hunter22"),
        ("{'username': 'gw1', 'password': 'hunter22'}", "hunter22"),
        ('{"token": "abc123def"}', "abc123def"),
    ],
)
def test_redact_masks_secrets(text: str, leak: str) -> None:
    out = redact(text)
    assert leak not in out and "***" in out


def test_redact_keeps_ordinary_text() -> None:
    for text in ("GET /api/v1/sites/{site}/kpis/history 200 3.1 ms", "http://127.0.0.1:8086/write"):
        assert redact(text) == text


def _record(msg: str, *args: object, **extra: object) -> logging.LogRecord:
    rec = logging.LogRecord("api.access", logging.INFO, __file__, 1, msg, args, None)
    rec.__dict__.update(extra)
    return rec


def test_json_formatter_fields_extras_and_redaction() -> None:
    rec = _record("login with %s", f"Bearer {TOKEN}", route="/x/{site}", status=401,
                  duration_ms=1.5, site="sh01", token=token_fingerprint(TOKEN),
                  headers={"authorization": f"Bearer {TOKEN}"})  # fmt: skip
    line = JsonFormatter().format(rec)
    obj = json.loads(line)
    assert obj["level"] == "INFO" and obj["logger"] == "api.access"
    assert obj["ts"].endswith("Z") and "T" in obj["ts"]
    assert obj["route"] == "/x/{site}" and obj["status"] == 401 and obj["duration_ms"] == 1.5
    assert obj["site"] == "sh01" and obj["token"] == token_fingerprint(TOKEN)
    assert len(obj["token"]) == 8
    assert TOKEN not in line
    assert "args" not in obj and "msg" not in obj  # record internals are not fields


def test_json_formatter_exception_is_one_field() -> None:
    try:
        raise RuntimeError(f"cannot connect to mqtt://gw:pw-{TOKEN}@127.0.0.1")
    except RuntimeError:
        import sys

        rec = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", None, sys.exc_info())
    line = JsonFormatter().format(rec)
    assert "\n" not in line and TOKEN not in line
    assert "RuntimeError" in json.loads(line)["exc"]


def test_text_formatter_redacts() -> None:
    out = TextFormatter().format(_record("url %s", "postgresql://u:topsecret@127.0.0.1/db"))
    assert "topsecret" not in out and "INFO api.access: url" in out


def test_configure_logging_json_and_unknown_format(monkeypatch: pytest.MonkeyPatch) -> None:
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    try:
        stream = io.StringIO()
        assert configure_logging(logging.INFO, "json", stream, force=True) == "json"
        logging.getLogger("t").info("hello", extra={"site": "s1"})
        assert json.loads(stream.getvalue())["site"] == "s1"
        monkeypatch.setenv("ZHIZAO_LOG_FORMAT", "xml")
        with pytest.raises(ConfigError, match="text or json"):
            configure_logging(logging.INFO, None, stream)
        monkeypatch.setenv("ZHIZAO_LOG_FORMAT", "text")
        stream2 = io.StringIO()
        assert configure_logging(logging.INFO, None, stream2) == "text"  # replaces its own
        logging.getLogger("t").info("plain")
        assert stream2.getvalue().rstrip().endswith("INFO t: plain") and "plain" not in (
            stream.getvalue()
        )
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])


def test_zhizao_log_format_json_reaches_every_service(tmp_path: Path) -> None:
    """`zhizao --log-format json` (the kernel's option, before the sub-command) formats every
    record of a service's process, third-party libraries' included: the simulator here."""
    env = {k: v for k, v in os.environ.items() if k != "ZHIZAO_LOG_FORMAT"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "zhizao.cli", "--log-format", "json", "-v", "sim", "run",
         "--opcua-endpoint", f"opc.tcp://127.0.0.1:{free_port()}",
         "--mqtt-url", f"mqtt://127.0.0.1:{free_port()}", "--user", "op:hunter2-opcua-pw"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
        cwd=tmp_path,
    )  # fmt: skip
    time.sleep(4)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        err_b = proc.communicate(timeout=10)[1]
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        err_b = proc.communicate(timeout=10)[1]
    err = err_b.decode()
    lines = [json.loads(line) for line in err.splitlines() if line.strip()]
    assert len(lines) >= 2, err
    assert all({"ts", "level", "logger", "message"} <= obj.keys() for obj in lines)
    assert "hunter2-opcua-pw" not in err
