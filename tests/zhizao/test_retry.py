"""zhizao.retry: the one backoff policy and the one log-once / recovered-once rule, and that the
services use them instead of their own loops."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from zhizao.retry import Backoff, Episode

ROOT = Path(__file__).resolve().parents[2]


def test_backoff_doubles_up_to_the_maximum_within_its_jitter() -> None:
    b = Backoff(0.5, 4.0, jitter=0.25)
    delays = [b.next_delay_s() for _ in range(7)]
    nominal = [0.5, 1.0, 2.0, 4.0, 4.0, 4.0, 4.0]
    for d, n in zip(delays, nominal, strict=True):
        assert 0.75 * n <= d <= 1.25 * n, (delays, nominal)
    b.reset()
    assert 0.375 <= b.next_delay_s() <= 0.625


def test_backoff_without_jitter_is_exact_and_a_low_maximum_means_no_growth() -> None:
    b = Backoff(1.0, 3.0, jitter=0.0)
    assert [b.next_delay_s() for _ in range(4)] == [1.0, 2.0, 3.0, 3.0]
    flat = Backoff(2.0, 1.0, jitter=0.0)
    assert [flat.next_delay_s() for _ in range(3)] == [2.0, 2.0, 2.0]


@pytest.mark.parametrize(("min_s", "jitter"), [(0.0, 0.25), (-1.0, 0.25), (1.0, 1.0)])
def test_backoff_refuses_a_busy_loop_or_a_jitter_that_could_reach_zero(
    min_s: float, jitter: float
) -> None:
    with pytest.raises(ValueError, match="backoff"):
        Backoff(min_s, 10.0, jitter=jitter)


def test_an_episode_is_logged_once_and_its_end_once_with_its_count() -> None:
    e = Episode()
    assert e.recovered() == 0  # nothing going on: nothing to say
    assert e.failed("db down") is True
    assert e.failed("db down") is False
    assert e.failed("another text") is False  # one episode, whatever the text
    assert e.active and e.detail == "another text"
    assert e.recovered() == 3
    assert not e.active and e.recovered() == 0
    assert e.failed("db down") is True  # a new episode is news again
    assert e.total == 4


def test_with_relog_on_change_a_new_failure_is_news_inside_a_streak() -> None:
    e = Episode(relog_on_change=True)
    assert [e.failed(t) for t in ("a", "a", "b", "b", "a")] == [True, False, True, False, True]
    assert e.recovered() == 5


def test_the_services_have_no_retry_loop_of_their_own() -> None:
    # the doubling idiom the services used before zhizao.retry (ingest's write and quarantine
    # retries); a new one should be a Backoff
    doubling = re.compile(r"min\(\s*\w+\s*\*\s*2\b|\w+_s\s*\*=\s*2\b")
    found = [
        str(path.relative_to(ROOT))
        for package in ("gateway", "ingest", "analytics", "api")
        for path in (ROOT / package).rglob("*.py")
        if doubling.search(path.read_text(encoding="utf-8"))
    ]
    assert found == []
    assert not re.search(r"class Backoff\b", (ROOT / "gateway/sources/base.py").read_text())
