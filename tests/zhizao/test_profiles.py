"""The machine profiles: one registry for the site model's defaults, the state maps, browse's
signal names and docs/PROFILES.md; the minimal sample site model relies on it."""

from __future__ import annotations

from pathlib import Path

import pytest

from analytics.compute import SiteComputer
from analytics.config import KpiConfig
from analytics.states import StateClassifier
from zhizao.profiles import PROFILES, render_doc
from zhizao.site import MachineTypeConfig, StateProfile, load_site

ROOT = Path(__file__).resolve().parents[2]


def test_profiles_doc_is_generated_from_the_registry() -> None:
    text = (ROOT / "docs" / "PROFILES.md").read_text(encoding="utf-8")
    assert text == render_doc(), "run: python -m zhizao.profiles > docs/PROFILES.md"
    for profile in PROFILES.values():
        assert f"## `{profile.profile.value}`" in text
        for name in profile.signal_names():
            assert f"| `{name}` |" in text


@pytest.mark.parametrize("profile", [p for p in StateProfile if p is not StateProfile.CUSTOM])
def test_a_type_naming_a_profile_gets_its_signals_and_a_consistent_state_map(
    profile: StateProfile,
) -> None:
    mtype = MachineTypeConfig(profile=profile)
    reg = PROFILES[profile]
    assert [s.name for s in mtype.signals] == reg.signal_names()
    assert dict(mtype.namespaces) == dict(reg.namespaces)
    states = {s.name for s in mtype.signals if s.kind == "state"}
    assert states, "a profile without state signals books every minute as NO_DATA"
    # every "<signal>=<code>" key and neutral code names a state signal of the profile
    for key in [*reg.state_map, *reg.neutral]:
        if "=" in key:
            assert key.split("=", 1)[0] in states, (profile, key)
    # the profile's own state map is what the classifier uses
    clf = StateClassifier.for_type(mtype)
    assert all(clf.mapping[k] == v for k, v in reg.state_map.items())
    # listing signals replaces the defaults
    own = MachineTypeConfig.model_validate(
        {"profile": profile.value, "signals": [{"name": "state", "measurement": "machine_state", "kind": "state"}]}
    )  # fmt: skip
    assert [s.name for s in own.signals] == ["state"]


def test_minimal_sample_site_parses_and_the_engine_accepts_it() -> None:
    site = load_site(ROOT / "analytics" / "site.sample.yaml")
    cnc = site.machine_types["cnc-lathe"]
    assert "program_status" in {s.name for s in cnc.signals if s.kind == "state"}
    tool = site.machine_types["machine-tool"]
    assert {"machinery_item_state", "channel_state", "program_state"} <= {
        s.name for s in tool.signals if s.kind == "state"
    }
    computer = SiteComputer(site, KpiConfig.model_validate({"sites": ["site.sample.yaml"]}))
    assert set(computer.contexts) == {"MC1", "L2"}
