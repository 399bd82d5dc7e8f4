"""Which raw signals the KPIs need, per machine: state signals and role -> (measurement, field).

Shared by the CSV loader and the InfluxDB reader so both read the same things.
"""

from __future__ import annotations

from dataclasses import dataclass

from analytics.config import COUNTER_ROLES, KpiConfig, SignalRef
from zhizao.site import MeterConfig, SiteModel

__all__ = ["MachinePlan", "read_plan"]

ROLES: tuple[str, ...] = (
    *COUNTER_ROLES,
    "product",
    "spindle_load_pct",
    "spindle_speed_rpm",
    "cutting",
)


@dataclass(frozen=True, slots=True)
class MachinePlan:
    machine: str
    states: list[SignalRef]  # state signals (field = the name used in state_map keys)
    roles: dict[str, SignalRef]  # role -> signal
    energy_meter: MeterConfig | None


def read_plan(site: SiteModel, cfg: KpiConfig) -> dict[str, MachinePlan]:
    """What to read for every machine of ``site``."""
    roles = {r: ref for r in ROLES if (ref := getattr(cfg.signals, r)) is not None}
    plans: dict[str, MachinePlan] = {}
    for _, _, m in site.machines():
        mtype = site.machine_types[m.type]
        states = list(cfg.signals.state) or [
            SignalRef(measurement=s.measurement, field=s.name)
            for s in mtype.signals
            if s.kind == "state"
        ]
        if not states:
            states = [SignalRef(measurement="machine_state", field="state")]
        meter = None
        for mt in site.meters:
            if (
                mt.medium == "electricity"
                and mt.asset
                and mt.asset.rstrip("/").split("/")[-1] == m.id
            ):
                meter = mt
        plans[m.id] = MachinePlan(m.id, states, roles, meter)
    return plans
