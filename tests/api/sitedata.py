"""Realistic site models for the API storage tests: the simulator's factory, with a reason tree."""

from __future__ import annotations

from typing import Any

from simulator.config import load_sim_config
from zhizao.site import SiteModel

REASONS: list[dict[str, Any]] = [
    {"code": "BRK", "label": "Breakdown", "label_zh": "故障", "category": "breakdown"},
    {"code": "BRK-SPINDLE", "label": "Spindle fault", "category": "breakdown", "parent": "BRK"},
    {"code": "SETUP", "label": "Setup / changeover", "label_zh": "换型", "category": "setup"},
    {"code": "MAT", "label": "Waiting for material", "category": "material"},
    {"code": "NOORD", "label": "No order", "category": "no_order"},
]


def sim_site(**changes: Any) -> SiteModel:
    """The simulator's site model with a stop-reason tree (``changes`` replace top-level keys)."""
    data = load_sim_config(None).build_site().model_dump(mode="json")
    data["reasons"] = REASONS
    data.update(changes)
    return SiteModel.model_validate(data)


def with_pri(model: SiteModel, product: str, machine: str, seconds: float) -> SiteModel:
    """``model`` with the PRI of ``product`` on ``machine`` set to ``seconds``."""
    data = model.model_dump(mode="json")
    for p in data["products"]:
        if p["id"] == product:
            p["ideal_cycle_s_by_machine"][machine] = seconds
    return SiteModel.model_validate(data)


def first_machine(model: SiteModel) -> str:
    return model.machines()[0][2].id
