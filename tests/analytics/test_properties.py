"""Property tests: OEE identities, partition-invariant roll-ups, counter arithmetic."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray

from analytics.aggregate import rollup
from analytics.calendar import PlannedTime
from analytics.components import COMPONENT_FIELDS, Components
from analytics.counters import counter_increments
from analytics.oee import iso22400_kpis, nakajima_kpis
from analytics.states import STATES, state_timeline
from analytics.timeelements import time_elements

SETTINGS = settings(max_examples=60, deadline=None)
S = 1_000_000_000


@st.composite
def machine_rows(draw: st.DrawFn, products: int = 1) -> dict[str, float]:
    pbt = draw(st.integers(1, 86_400))
    cuts = sorted(draw(st.lists(st.integers(0, pbt), min_size=3, max_size=3)))
    apt, aust, adet, adot = cuts[0], cuts[1] - cuts[0], cuts[2] - cuts[1], pbt - cuts[2]
    apt = max(apt, 1)
    pbt = apt + aust + adet + adot
    pq = draw(st.integers(1, 5_000))
    sq = draw(st.integers(0, pq))
    rq = draw(st.integers(0, pq - sq))
    pri = draw(st.floats(0.5, 600, allow_nan=False))
    return {
        "pbt_s": pbt, "apt_s": apt, "aust_s": aust, "adet_s": adet, "adot_s": adot,
        "adet_minor_s": draw(st.integers(0, adet)),
        "pq": pq, "sq": sq, "rq": rq, "gq": pq - sq - rq,
        "pri_pq_s": pri * pq, "pri_gq_s": pri * (pq - sq - rq),
    }  # fmt: skip


@SETTINGS
@given(st.lists(machine_rows(), min_size=1, max_size=8))
def test_oee_equals_pri_gq_over_pbt_and_a_times_e_times_q(rows: list[dict[str, float]]) -> None:
    c = Components.from_rows(rows)
    k = iso22400_kpis(c)
    pri = c.pri_pq_s / c.pq
    np.testing.assert_allclose(k["oee"].value, pri * c.gq / c.pbt_s, rtol=1e-9)
    a_e_q = k["availability"].value * k["effectiveness"].value * k["quality"].value
    np.testing.assert_allclose(a_e_q, k["oee"].value, rtol=1e-9, atol=1e-15)
    n = nakajima_kpis(c)
    tpm = n["availability_tpm"].value * n["performance_tpm"].value * n["quality_tpm"].value
    np.testing.assert_allclose(tpm, k["oee"].value, rtol=1e-9, atol=1e-15)
    # several products on one line: A x E x (PRI-weighted quality) is still exactly the OEE
    line = c.total()
    kl = iso22400_kpis(line)
    np.testing.assert_allclose(
        kl["availability"].value * kl["effectiveness"].value * kl["quality_pri_weighted"].value,
        kl["oee"].value, rtol=1e-9,
    )  # fmt: skip


@SETTINGS
@given(st.lists(machine_rows(), min_size=1, max_size=12), st.data())
def test_any_partition_aggregates_to_the_whole(
    rows: list[dict[str, float]], data: st.DataObject
) -> None:
    c = Components.from_rows(rows)
    n = len(c)
    lines = data.draw(st.lists(st.sampled_from("ABCD"), min_size=n, max_size=n))
    factories = [f"F{ord(x) % 2}" for x in lines]  # lines nest inside factories
    r = rollup(c, {"line": lines, "factory": factories})
    for level in ("line", "factory"):
        _, parts = r[level]
        whole = parts.total()
        for name in COMPONENT_FIELDS:
            np.testing.assert_allclose(whole.column(name), r["city"][1].column(name), rtol=1e-12)
        oee_from_parts = iso22400_kpis(whole)["oee"].value
        np.testing.assert_allclose(
            oee_from_parts, iso22400_kpis(c.total())["oee"].value, rtol=1e-12
        )


@st.composite
def counter_story(draw: st.DrawFn) -> tuple[list[float], int, float]:
    """Readings of a counter with resets and rollovers, plus the true production.

    A reset is only visible as a drop, and a drop from the top 10 % of the range is read as a
    wrap; the generator respects those two observability limits (DOMAIN rule 4).
    """
    limit = draw(st.sampled_from([1000.0, 65536.0, 4294967296.0]))
    steps = draw(
        st.lists(
            st.tuples(
                st.integers(0, int(limit * 0.05)), st.sampled_from(["count", "count", "reset"])
            ),
            min_size=1,
            max_size=200,
        )
    )
    value = float(draw(st.integers(0, int(limit) - 1)))
    readings = [value]
    true_total = 0
    for inc, kind in steps:
        if kind == "reset" and inc < value < limit * 0.9:
            value = float(inc)  # power cycle: restarts at 0, then counts inc parts
        else:
            value = (value + inc) % limit
        true_total += inc
        readings.append(value)
    return readings, true_total, limit


@SETTINGS
@given(counter_story())
def test_counter_increments_never_negative_and_sum_to_true_production(
    story: tuple[list[float], int, float],
) -> None:
    readings, true_total, limit = story
    ts = np.arange(len(readings), dtype=np.int64) * 1_000_000_000
    _, inc, _ = counter_increments(ts, np.array(readings), rollover=limit)
    assert (inc >= 0).all()
    assert inc.sum() == true_total


def test_reset_without_rollover_counts_post_reset_value() -> None:
    ts = np.arange(5, dtype=np.int64)
    _, inc, reset = counter_increments(ts, np.array([10.0, 12, 3, 5, np.nan]))
    assert inc.tolist() == [0, 2, 3, 2] and reset.tolist() == [False, False, True, False]


@st.composite
def state_story(draw: st.DrawFn) -> tuple[NDArray[np.int64], NDArray[np.int8], list[int], float]:
    n = draw(st.integers(0, 60))
    gaps = draw(st.lists(st.integers(1, 900), min_size=n, max_size=n))
    ts = np.cumsum(np.asarray(gaps, np.int64)) * 1_000_000_000
    codes = np.asarray(
        draw(st.lists(st.integers(0, len(STATES) - 1), min_size=n, max_size=n)), np.int8
    )
    cuts = sorted(set(draw(st.lists(st.integers(1, 59), max_size=6))))
    heartbeat = draw(st.sampled_from([30.0, 300.0, 1e6]))
    return ts, codes, cuts, heartbeat


@SETTINGS
@given(state_story())
def test_time_elements_close_and_windows_partition(
    story: tuple[NDArray[np.int64], NDArray[np.int8], list[int], float],
) -> None:
    """PBT = APT + AUST + ADET + ADOT exactly, and cutting a range into windows changes no sum."""
    ts, codes, cuts, heartbeat = story
    lo, hi = 0, 60 * 600 * 1_000_000_000
    pot = (np.array([lo + 600 * S], np.int64), np.array([hi - 900 * S], np.int64))
    down = (np.array([lo + 5000 * S], np.int64), np.array([lo + 6200 * S], np.int64))
    planned = PlannedTime(pot[0], pot[1], down[0], down[1], ())
    tl = state_timeline(ts, codes, start_ns=lo, end_ns=hi, heartbeat_s=heartbeat)
    whole = time_elements(tl, planned, np.array([lo], np.int64), np.array([hi], np.int64))
    assert whole.pbt_s[0] == whole.apt_s[0] + whole.aust_s[0] + whole.adet_s[0] + whole.adot_s[0]
    assert whole.pot_s[0] == whole.pbt_s[0] + whole.planned_down_s[0]
    assert 0 <= whole.adet_no_data_s[0] <= whole.adet_s[0]
    edges = np.array([lo] + [c * 600 * S for c in cuts] + [hi], np.int64)
    parts = time_elements(tl, planned, edges[:-1], edges[1:])
    for name in (
        "pot_s",
        "pbt_s",
        "apt_s",
        "aust_s",
        "adet_s",
        "adet_minor_s",
        "adet_no_data_s",
        "adot_s",
        "in_cycle_s",
    ):
        assert parts.column(name).sum() == pytest.approx(whole.column(name)[0], abs=1e-6), name
