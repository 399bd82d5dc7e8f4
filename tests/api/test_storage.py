"""Master data in a real database (sqlite and PostgreSQL): import, re-import, read back, and
stop-reason assignments."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from api.db.models import Machine, Product, ProductMachinePri, Reason, Site, StopAssignmentRow
from api.db.session import make_engine, make_sessionmaker, upgrade
from api.masterdata import (
    assign_stop_reason,
    import_site,
    list_sites,
    load_site_model,
    split_stop,
    stop_assignments,
)
from tests.api.sitedata import first_machine, sim_site, with_pri
from zhizao.site import SiteModel

S = 1_000_000_000


@pytest.fixture
def session(db_url: str) -> Iterator[Session]:
    upgrade(db_url)
    engine = make_engine(db_url)
    with make_sessionmaker(engine)() as s:
        yield s
    engine.dispose()


def _count(session: Session, model: type[object]) -> int:
    return int(session.scalar(select(func.count()).select_from(model)) or 0)


def test_import_then_reimport_unchanged(session: Session) -> None:
    model = sim_site()
    first = import_site(session, model)
    session.commit()
    n_machines = len(model.machines())
    assert n_machines > 1
    assert f"site:{model.site}" in first.created
    assert f"enterprise:{model.enterprise}" in first.created
    assert {f"machine:{m.id}" for _, _, m in model.machines()} <= set(first.created)
    assert first.updated == []
    assert _count(session, Machine) == n_machines
    assert _count(session, Reason) == len(model.reasons)

    again = import_site(session, model)
    session.commit()
    assert again.created == [] and again.updated == [] and again.deleted == []
    assert again.unchanged == len(first.created) - 1  # everything but the enterprise row
    assert _count(session, Machine) == n_machines
    assert _count(session, Site) == 1


def test_changed_pri_is_reported_as_updated_without_duplicates(session: Session) -> None:
    model = sim_site()
    import_site(session, model)
    session.commit()
    machine = first_machine(model)
    product = model.products[0]
    changed = with_pri(model, product.id, machine, 77.5)
    report = import_site(session, changed)
    session.commit()
    assert report.created == [f"pri:{product.id}@{machine}"]
    assert report.updated == []

    changed2 = with_pri(changed, product.id, machine, 80.0)
    report2 = import_site(session, changed2)
    session.commit()
    assert report2.updated == [f"pri:{product.id}@{machine}"]
    assert report2.created == []
    assert _count(session, ProductMachinePri) == 1
    assert _count(session, Product) == len(model.products)
    pri = session.scalars(select(ProductMachinePri)).one()
    assert pri.ideal_cycle_s == 80.0
    loaded = load_site_model(session, model.site)
    assert loaded == changed2
    assert loaded is not None and loaded.product(product.id).pri_s(machine) == 80.0


def test_load_site_model_equals_the_input(session: Session) -> None:
    model = sim_site()
    import_site(session, model)
    session.commit()
    session.expunge_all()
    loaded = load_site_model(session, model.site)
    assert loaded == model
    assert loaded is not None and loaded.reasons == model.reasons
    assert load_site_model(session, "no-such-site") is None


def test_list_sites(session: Session) -> None:
    model = sim_site()
    other = sim_site(site="second-plant", name="Second", district="Minhang")
    import_site(session, model)
    import_site(session, other)
    session.commit()
    rows = list_sites(session)
    assert [(r.enterprise, r.site) for r in rows] == sorted(
        [(model.enterprise, model.site), (other.enterprise, "second-plant")]
    )
    second = next(r for r in rows if r.site == "second-plant")
    assert (second.name, second.district, second.timezone) == ("Second", "Minhang", other.timezone)


def test_removed_machine_is_deleted_and_reported(session: Session) -> None:
    model = sim_site()
    import_site(session, model)
    session.commit()
    data = model.model_dump(mode="json")
    gone = data["areas"][0]["lines"][0]["machines"].pop()
    data["name"] = "renamed"
    smaller = SiteModel.model_validate(data)
    report = import_site(session, smaller)
    session.commit()
    assert f"machine:{gone['id']}" in report.deleted
    assert f"site:{model.site}" in report.updated
    assert _count(session, Machine) == len(model.machines()) - 1
    assert load_site_model(session, model.site) == smaller


def test_same_site_id_in_another_enterprise_is_refused(session: Session) -> None:
    import_site(session, sim_site())
    with pytest.raises(ValueError, match=r"site: .* another enterprise"):
        import_site(session, sim_site(enterprise="other-group"))


# -- stop-reason assignments -------------------------------------------------------------------


@pytest.fixture
def site_session(session: Session) -> Iterator[tuple[Session, SiteModel]]:
    model = sim_site()
    import_site(session, model)
    session.commit()
    yield session, model


def test_assign_and_read_back(site_session: tuple[Session, SiteModel]) -> None:
    session, model = site_session
    m = first_machine(model)
    a = assign_stop_reason(
        session,
        site=model.site,
        machine=m,
        start_ns=100 * S,
        end_ns=200 * S,
        reason_code="BRK-SPINDLE",
        note="bearing",
        created_by="alice",
    )
    session.commit()
    assert a.id > 0 and a.created_at.tzinfo is not None
    got = stop_assignments(session, site=model.site, machine=m, start_ns=0, end_ns=1000 * S)
    assert [(g.start_ns, g.end_ns, g.reason_code, g.note, g.created_by) for g in got] == [
        (100 * S, 200 * S, "BRK-SPINDLE", "bearing", "alice")
    ]
    # outside the range and another machine: nothing
    assert (
        stop_assignments(session, site=model.site, machine=m, start_ns=200 * S, end_ns=300 * S)
        == []
    )
    other = model.machines()[1][2].id
    assert (
        stop_assignments(session, site=model.site, machine=other, start_ns=0, end_ns=1000 * S) == []
    )
    assert (
        len(stop_assignments(session, site=model.site, machine=None, start_ns=0, end_ns=1000 * S))
        == 1
    )


def test_split_and_newest_wins(site_session: tuple[Session, SiteModel]) -> None:
    session, model = site_session
    m = first_machine(model)
    kw = {"site": model.site, "machine": m, "note": "", "created_by": "bob"}
    assign_stop_reason(session, start_ns=0, end_ns=100 * S, reason_code="MAT", **kw)
    parts = split_stop(
        session,
        start_ns=0,
        end_ns=100 * S,
        at_ns=40 * S,
        first_reason="SETUP",
        second_reason="BRK",
        **kw,
    )
    assert [(p.start_ns, p.end_ns, p.reason_code) for p in parts] == [
        (0, 40 * S, "SETUP"),
        (40 * S, 100 * S, "BRK"),
    ]
    # a newer assignment over the middle overrides both halves there
    assign_stop_reason(session, start_ns=30 * S, end_ns=50 * S, reason_code="NOORD", **kw)
    session.commit()
    got = stop_assignments(session, site=model.site, machine=m, start_ns=0, end_ns=100 * S)
    assert [(g.start_ns, g.end_ns, g.reason_code) for g in got] == [
        (0, 30 * S, "SETUP"),
        (30 * S, 50 * S, "NOORD"),
        (50 * S, 100 * S, "BRK"),
    ]
    # history is kept: four rows (the first one fully overridden)
    assert _count(session, StopAssignmentRow) == 4


def test_bad_machine_reason_or_range_is_refused(site_session: tuple[Session, SiteModel]) -> None:
    session, model = site_session
    m = first_machine(model)
    kw = {"site": model.site, "note": "", "created_by": "x", "start_ns": 0, "end_ns": S}
    with pytest.raises(ValueError, match=r"^machine: 'nope'"):
        assign_stop_reason(session, machine="nope", reason_code="BRK", **kw)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^reason_code: 'WHAT'"):
        assign_stop_reason(session, machine=m, reason_code="WHAT", **kw)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^site: 'elsewhere'"):
        assign_stop_reason(
            session,
            site="elsewhere",
            machine=m,
            reason_code="BRK",
            note="",
            created_by="x",
            start_ns=0,
            end_ns=S,
        )
    with pytest.raises(ValueError, match=r"^end_ns"):
        assign_stop_reason(
            session,
            site=model.site,
            machine=m,
            reason_code="BRK",
            note="",
            created_by="x",
            start_ns=S,
            end_ns=S,
        )
    with pytest.raises(ValueError, match=r"^at_ns"):
        split_stop(
            session,
            site=model.site,
            machine=m,
            start_ns=0,
            end_ns=S,
            at_ns=S,
            first_reason="BRK",
            second_reason="MAT",
            note="",
            created_by="x",
        )
    with pytest.raises(ValueError, match=r"^second_reason"):
        split_stop(
            session,
            site=model.site,
            machine=m,
            start_ns=0,
            end_ns=S,
            at_ns=S // 2,
            first_reason="BRK",
            second_reason="??",
            note="",
            created_by="x",
        )
    assert _count(session, StopAssignmentRow) == 0


# -- the stop-reason tree of the site model ---------------------------------------------------


def test_reason_tree_rules() -> None:
    from pydantic import ValidationError

    ok = sim_site()
    assert ok.reasons[1].parent == "BRK" and ok.reasons[0].label_zh == "故障"
    assert sim_site(reasons=[]).reasons == []
    dup = [
        *ok.model_dump(mode="json")["reasons"],
        {"code": "BRK", "label": "again", "category": "other"},
    ]
    with pytest.raises(ValidationError, match="reason code 'BRK' appears twice"):
        sim_site(reasons=dup)
    with pytest.raises(ValidationError, match="reason 'X' has unknown parent 'NOPE'"):
        sim_site(reasons=[{"code": "X", "label": "x", "category": "other", "parent": "NOPE"}])
    with pytest.raises(ValidationError, match="category"):
        sim_site(reasons=[{"code": "X", "label": "x", "category": "coffee"}])


def test_what_is_left_of_an_overridden_assignment_stays_outside_the_range(
    site_session: tuple[Session, SiteModel],
) -> None:
    session, model = site_session
    m = first_machine(model)
    kw = {"site": model.site, "machine": m, "note": "", "created_by": "carol"}
    assign_stop_reason(session, start_ns=0, end_ns=100 * S, reason_code="MAT", **kw)
    assign_stop_reason(session, start_ns=10 * S, end_ns=50 * S, reason_code="SETUP", **kw)
    session.commit()
    # the older MAT row overlaps the range, but its remaining parts [0, 10) and [50, 100) do not
    got = stop_assignments(session, site=model.site, machine=m, start_ns=20 * S, end_ns=30 * S)
    assert [(g.start_ns, g.end_ns, g.reason_code) for g in got] == [(10 * S, 50 * S, "SETUP")]
    got = stop_assignments(session, site=model.site, machine=m, start_ns=45 * S, end_ns=60 * S)
    assert [(g.start_ns, g.end_ns, g.reason_code) for g in got] == [
        (10 * S, 50 * S, "SETUP"),
        (50 * S, 100 * S, "MAT"),
    ]


def test_reason_tree_without_a_root_is_refused() -> None:
    from pydantic import ValidationError

    loop: list[dict[str, str | None]] = [
        {"code": "A", "label": "a", "category": "other", "parent": "C"},
        {"code": "B", "label": "b", "category": "other", "parent": "A"},
        {"code": "C", "label": "c", "category": "other", "parent": "B"},
    ]
    with pytest.raises(ValidationError, match=r"reasons A -> C -> B -> A form a cycle"):
        sim_site(reasons=loop)
    # the same codes with a root are a valid tree
    loop[0]["parent"] = None
    assert [r.parent for r in sim_site(reasons=loop).reasons] == [None, "A", "B"]
