"""Machine profiles: the signals and state map a standard machine type brings with it.

A machine type of the site model names a profile (``profile: opc40502``). Left without
``signals``, the type gets the profile's signals (names, measurements, OPC UA browse paths), and
its source codes map to platform states by the profile's state map (the site model's
``state_map`` overrides single entries). ``zhizao gateway browse`` proposes exactly these signal
names for the variables it recognises, so an integrator writes only the calendar, the products
with their ideal cycle times and the profile's name. ``docs/PROFILES.md`` is generated from this
registry (``python -m zhizao.profiles``; a test fails when it differs).

State map keys are a code as published (``Executing``) or ``<signal>=<code>`` where a bare code
would be ambiguous (numeric enumerations of different signals). ``neutral`` codes are known but
say nothing about the state (an operation mode ``Automatic``): they are never reported as
unknown, and where no other signal of the machine maps, the time is NO_DATA as for any code
without a state.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from zhizao.site import MachineState, SignalConfig, StateProfile

__all__ = ["PROFILES", "BrowseMatch", "MachineProfile", "ProfileSignal", "profile_of", "render_doc"]

_S = MachineState

NS = {
    "UA": "http://opcfoundation.org/UA/",
    "DI": "http://opcfoundation.org/UA/DI/",
    "MA": "http://opcfoundation.org/UA/Machinery/",
    "MT": "http://opcfoundation.org/UA/MachineTool/",
    "CNC": "http://opcfoundation.org/UA/CNC/",
    "PM": "http://opcfoundation.org/UA/PackML/",
}


@dataclass(frozen=True, slots=True)
class BrowseMatch:
    """How ``gateway browse`` recognises a signal's variable: its browse name, and optionally
    the parent's browse name and some ancestor's (regular expressions, full match). Matches of
    one signal are tried in order: the first that a machine has is the signal."""

    spec: str  # companion specification, as listed by browse ("OPC 40501")
    names: tuple[str, ...]
    parent: str | None = None
    context: str | None = None
    note: str = ""  # why this source is only an approximation (written into the tag map)


@dataclass(frozen=True, slots=True)
class ProfileSignal:
    signal: SignalConfig
    browse: tuple[BrowseMatch, ...] = ()
    description: str = ""


@dataclass(frozen=True, slots=True)
class MachineProfile:
    profile: StateProfile
    title: str
    signals: tuple[ProfileSignal, ...]
    state_map: Mapping[str, MachineState]
    neutral: frozenset[str] = frozenset()
    namespaces: Mapping[str, str] = field(default_factory=dict)

    def signal_configs(self) -> list[SignalConfig]:
        return [s.signal for s in self.signals]

    def signal_names(self) -> list[str]:
        return [s.signal.name for s in self.signals]


def _sig(
    name: str,
    measurement: str,
    dtype: str,
    kind: str,
    path: str | None,
    *browse: BrowseMatch,
    description: str = "",
    rollover: float | None = None,
) -> ProfileSignal:
    return ProfileSignal(
        SignalConfig.model_validate(
            {
                "name": name,
                "measurement": measurement,
                "dtype": dtype,
                "kind": kind,
                "opcua_path": path,
                "rollover": rollover,
            }
        ),
        browse,
        description,
    )


# -- state maps -------------------------------------------------------------------------------
# OPC 40001-1 Machinery: MachineryItemState (NotAvailable 0, OutOfService 1, NotExecuting 2,
# Executing 3) and MachineryOperationMode (None 0, Maintenance 1, Setup 2, Processing 3)
_OPC40001_MAP: dict[str, MachineState] = {
    "NotAvailable": _S.NO_DATA,
    "OutOfService": _S.DELAY,
    "NotExecuting": _S.IDLE,
    "Executing": _S.IN_CYCLE,
    "machinery_item_state=0": _S.NO_DATA,
    "machinery_item_state=1": _S.DELAY,
    "machinery_item_state=2": _S.IDLE,
    "machinery_item_state=3": _S.IN_CYCLE,
    "Setup": _S.SETUP,
    "Maintenance": _S.DELAY,
    "machinery_operation_mode=1": _S.DELAY,
    "machinery_operation_mode=2": _S.SETUP,
}
_OPC40001_NEUTRAL = frozenset(
    {"Processing", "None", "machinery_operation_mode=0", "machinery_operation_mode=3"}
)
# OPC 40502 CNC: CncChannelProgramStatus (Stopped 0, Running 1, Waiting 2, Interrupted 3,
# Canceled 4), CncChannelStatus (Active 0, Interrupted 1, Reset 2), CncOperationMode (Manual 0,
# MDA 1, Automatic 2: manual and MDA work on a CNC is setting up)
_OPC40502_MAP: dict[str, MachineState] = {
    "Running": _S.IN_CYCLE,
    "Stopped": _S.IDLE,
    "Waiting": _S.IN_CYCLE,  # dwell; waiting_is_in_cycle=False turns it into DELAY
    "Interrupted": _S.DELAY,
    "Canceled": _S.DELAY,
    "program_status=0": _S.IDLE,
    "program_status=1": _S.IN_CYCLE,
    "program_status=2": _S.IN_CYCLE,
    "program_status=3": _S.DELAY,
    "program_status=4": _S.DELAY,
    "Active": _S.IN_CYCLE,
    "Reset": _S.IDLE,
    "channel_status=0": _S.IN_CYCLE,
    "channel_status=1": _S.DELAY,
    "channel_status=2": _S.IDLE,
    "Manual": _S.SETUP,
    "MDA": _S.SETUP,
    "operation_mode=0": _S.SETUP,
    "operation_mode=1": _S.SETUP,
    "alarm_active=1": _S.DELAY,
    "alarm_active=True": _S.DELAY,
}
_OPC40502_NEUTRAL = frozenset(
    {"Automatic", "operation_mode=2", "alarm_active=0", "alarm_active=False"}
)
# OPC 40501-1 Machine tools: ChannelState (Interrupted 0, Active 1, Reset 2), MachineOperationMode
# (Manual 0, Automatic 1, Setup 2, AutoWithManualIntervention 3, Service 4, Other 5), the active
# program's ProductionProgramStateMachine (Initializing, Running, Ended, Interrupted, Aborted)
_OPC40501_MAP: dict[str, MachineState] = {
    "channel_state=0": _S.DELAY,
    "channel_state=1": _S.IN_CYCLE,
    "channel_state=2": _S.IDLE,
    "machine_tool_operation_mode=0": _S.SETUP,
    "machine_tool_operation_mode=2": _S.SETUP,
    "machine_tool_operation_mode=4": _S.DELAY,
    "program_state=Initializing": _S.IDLE,
    "program_state=Running": _S.IN_CYCLE,
    "program_state=Ended": _S.IDLE,
    "program_state=Interrupted": _S.DELAY,
    "program_state=Aborted": _S.DELAY,
}
_OPC40501_NEUTRAL = frozenset(
    {
        "machine_tool_operation_mode=1",
        "machine_tool_operation_mode=3",
        "machine_tool_operation_mode=5",
    }
)
# PackML (ISA-TR88, OPC 30050) StateCurrent and UnitModeCurrent
_PACKML_NAMES = (
    "Undefined", "Clearing", "Stopped", "Starting", "Idle", "Suspended", "Execute", "Stopping",
    "Aborting", "Aborted", "Holding", "Held", "Unholding", "Suspending", "Unsuspending",
    "Resetting", "Completing", "Complete",
)  # fmt: skip
_PACKML_STATE: dict[str, MachineState] = {
    "Undefined": _S.NO_DATA,
    "Execute": _S.IN_CYCLE,
    # starved/blocked by upstream/downstream and ready states: available but not producing
    "Idle": _S.IDLE, "Stopped": _S.IDLE, "Starting": _S.IDLE, "Resetting": _S.IDLE,
    "Complete": _S.IDLE, "Completing": _S.IDLE, "Suspended": _S.IDLE, "Suspending": _S.IDLE,
    "Unsuspending": _S.IDLE,
    # internal faults and operator holds: unplanned interruption
    "Held": _S.DELAY, "Holding": _S.DELAY, "Unholding": _S.DELAY, "Aborting": _S.DELAY,
    "Aborted": _S.DELAY, "Clearing": _S.DELAY, "Stopping": _S.DELAY,
}  # fmt: skip
_PACKML_MAP: dict[str, MachineState] = {
    **_PACKML_STATE,
    **{f"packml_state={i}": _PACKML_STATE[n] for i, n in enumerate(_PACKML_NAMES)},
    # unit modes: Production 1 is neutral; Maintenance 2 and Manual 3 are setup work
    "Maintenance": _S.SETUP,
    "Manual": _S.SETUP,
    "packml_unit_mode=2": _S.SETUP,
    "packml_unit_mode=3": _S.SETUP,
}
_PACKML_NEUTRAL = frozenset({"Production", "packml_unit_mode=1"})

# -- signals ----------------------------------------------------------------------------------
_CHANNEL = "CncChannelList"
_SPINDLE = "CncSpindleList"
_STATE_40001 = (
    _sig(
        "machinery_item_state", "machine_state", "string", "state",
        "MA:MachineryBuildingBlocks/MA:MachineryItemState/UA:CurrentState",
        BrowseMatch("OPC 40001", ("CurrentState",), parent="MachineryItemState"),
        description="MachineryItemState: NotAvailable, OutOfService, NotExecuting, Executing",
    ),
    _sig(
        "machinery_operation_mode", "machine_state", "string", "state",
        "MA:MachineryBuildingBlocks/MA:MachineryOperationMode/UA:CurrentState",
        BrowseMatch("OPC 40001", ("CurrentState",), parent="MachineryOperationMode"),
        description="MachineryOperationMode: None, Maintenance, Setup, Processing",
    ),
)  # fmt: skip
# part counters, best first: a lifetime count of parts, then the operation cycles (one part per
# cycle), then a job's completed runs (one part per run)
_PART_COUNT_BROWSE = (
    BrowseMatch("OPC 40501", ("PartsProducedInLifetime",), context="Production|Statistics"),
    BrowseMatch(
        "OPC 40502",
        ("PartCounter", "PartsCounter", "PartCount", "ActPartCount", "WorkpieceCounter"),
        context=_CHANNEL,
        note="vendor part counter of a CNC channel",
    ),
    BrowseMatch(
        "OPC 40001",
        ("OperationCycleCounter",),
        parent="OperationCounters",
        note="operation cycles: one part per cycle assumed",
    ),
    BrowseMatch(
        "OPC 40501",
        ("RunsCompleted",),
        context="ProductionPlan|ProductionJobList",
        note="completed runs of the job: one part per run assumed",
    ),
    BrowseMatch("generic", ("PartsCounter", "PartCounter", "PartCount", "PartsProduced")),
    BrowseMatch("generic", ("PartsProducedInLifetime",)),
)
_PART_COUNT = _sig(
    "part_count", "counter", "int", "counter", "MT:Production/MT:Statistics/MT:PartsProducedInLifetime",
    *_PART_COUNT_BROWSE,
    description="produced parts (the KPI role parts_total)",
)  # fmt: skip
_GOOD_COUNT = _sig(
    "good_part_count", "counter", "int", "counter", None,
    BrowseMatch("generic", ("GoodPartCounter", "GoodPartsCounter", "GoodParts", "GoodPartCount")),
    description="good parts (the KPI role parts_good); without it every part counts as good",
)  # fmt: skip
_SCRAP_COUNT = _sig(
    "scrap_part_count", "counter", "int", "counter", None,
    BrowseMatch(
        "generic", ("ScrapPartCounter", "BadPartCounter", "BadParts", "ScrapParts", "RejectCount")
    ),
    description="scrap parts (the KPI role parts_scrap)",
)  # fmt: skip
_REWORK_COUNT = _sig(
    "rework_part_count", "counter", "int", "counter", None,
    BrowseMatch("generic", ("ReworkPartCounter", "ReworkParts", "ReworkPartCount")),
    description="parts sent to rework (the KPI role parts_rework)",
)  # fmt: skip
_PRODUCT = _sig(
    "product_id", "machine_state", "string", "text", None,
    BrowseMatch("generic", ("ProductId", "ProductID", "ProductNumber", "PartNumber")),
    description="the product being made (the KPI role product: its ideal cycle time); no "
    "standard node, a vendor variable or default_product in kpi.yaml",
)  # fmt: skip
_COUNTERS = (_PART_COUNT, _GOOD_COUNT, _SCRAP_COUNT, _REWORK_COUNT, _PRODUCT)

_OPC40001 = MachineProfile(
    StateProfile.OPC40001,
    "OPC 40001-1 Machinery (MachineryItemState, MachineryOperationMode, operation counters)",
    (
        *_STATE_40001,
        _sig(
            "part_count", "counter", "int", "counter",
            "MA:MachineryBuildingBlocks/DI:OperationCounters/DI:OperationCycleCounter",
            *_PART_COUNT_BROWSE,
            description="operation cycles (the KPI role parts_total; one part per cycle)",
        ),
        _GOOD_COUNT, _SCRAP_COUNT, _REWORK_COUNT, _PRODUCT,
    ),
    _OPC40001_MAP,
    _OPC40001_NEUTRAL,
    {k: NS[k] for k in ("UA", "DI", "MA")},
)  # fmt: skip

_OPC40501 = MachineProfile(
    StateProfile.OPC40501,
    "OPC 40501-1 Machine tools (Monitoring, Production; with OPC 40001 Machinery states)",
    (
        *_STATE_40001,
        _sig(
            "channel_state", "machine_state", "int", "state", "MT:Monitoring/MT:Channel1/MT:ChannelState",
            BrowseMatch("OPC 40501", ("ChannelState",), context="Monitoring"),
            description="ChannelState: Interrupted 0, Active 1, Reset 2",
        ),
        _sig(
            "machine_tool_operation_mode", "machine_state", "int", "state",
            "MT:Monitoring/MT:MachineTool/MT:OperationMode",
            BrowseMatch("OPC 40501", ("OperationMode",), context="Monitoring"),
            description="MachineOperationMode: Manual 0, Automatic 1, Setup 2, "
            "AutoWithManualIntervention 3, Service 4, Other 5",
        ),
        _sig(
            "program_state", "machine_state", "string", "state",
            "MT:Production/MT:ActiveProgram/MT:State/UA:CurrentState",
            BrowseMatch("OPC 40501", ("CurrentState",), context="ActiveProgram"),
            description="the active program: Initializing, Running, Ended, Interrupted, Aborted",
        ),
        _sig(
            "program_name", "machine_state", "string", "text", "MT:Production/MT:ActiveProgram/MT:Name",
            BrowseMatch("OPC 40501", ("Name",), parent="ActiveProgram"),
        ),
        _sig(
            "feed_override_pct", "spindle", "float", "gauge", "MT:Monitoring/MT:Channel1/MT:FeedOverride",
            BrowseMatch("OPC 40501", ("FeedOverride",), context="Monitoring"),
        ),
        _sig(
            "spindle_rotating", "spindle", "bool", "gauge", "MT:Monitoring/MT:Spindle1/MT:IsRotating",
            BrowseMatch("OPC 40501", ("IsRotating",), context="Monitoring"),
        ),
        _sig(
            "spindle_override_pct", "spindle", "float", "gauge", "MT:Monitoring/MT:Spindle1/MT:Override",
            BrowseMatch("OPC 40501", ("Override",), context="Monitoring"),
        ),
        *_COUNTERS,
        _sig(
            "job_runs_planned", "counter", "int", "gauge", None,
            BrowseMatch("OPC 40501", ("RunsPlanned",), context="ProductionPlan|ProductionJobList"),
            description="planned runs of the job",
        ),
    ),
    {**_OPC40001_MAP, **_OPC40501_MAP},
    _OPC40001_NEUTRAL | _OPC40501_NEUTRAL,
    {k: NS[k] for k in ("UA", "DI", "MA", "MT")},
)  # fmt: skip

_CH = "CNC:CncInterface/CNC:CncChannelList/CNC:Channel1"
_SP = "CNC:CncInterface/CNC:CncSpindleList/CNC:Spindle1"
_OPC40502 = MachineProfile(
    StateProfile.OPC40502,
    "OPC 40502 CNC systems (channel, program, operation mode, spindles; with OPC 40001 states)",
    (
        _sig(
            "channel_status", "machine_state", "int", "state", f"{_CH}/CNC:ChannelStatus",
            BrowseMatch("OPC 40502", ("ChannelStatus",), context=_CHANNEL),
            description="CncChannelStatus: Active 0, Interrupted 1, Reset 2",
        ),
        _sig(
            "program_status", "machine_state", "int", "state", f"{_CH}/CNC:ActProgramStatus",
            BrowseMatch("OPC 40502", ("ActProgramStatus",), context=_CHANNEL),
            description="CncChannelProgramStatus: Stopped 0, Running 1, Waiting 2, "
            "Interrupted 3, Canceled 4",
        ),
        _sig(
            "operation_mode", "machine_state", "int", "state", f"{_CH}/CNC:ActOperationMode",
            BrowseMatch("OPC 40502", ("ActOperationMode",), context=_CHANNEL),
            description="CncOperationMode: Manual 0, MDA 1, Automatic 2",
        ),
        *_STATE_40001,
        _sig(
            "alarm_active", "machine_state", "bool", "state", None,
            BrowseMatch("generic", ("AlarmActive",)),
            description="an active alarm (a vendor flag: OPC 40502 reports alarms as events)",
        ),
        _sig(
            "program_name", "machine_state", "string", "text", f"{_CH}/CNC:ActMainProgramName",
            BrowseMatch("OPC 40502", ("ActMainProgramName", "ActProgramName"), context=_CHANNEL),
        ),
        _sig(
            "feedrate_mm_min", "spindle", "float", "gauge", f"{_CH}/CNC:ActFeedrate",
            BrowseMatch("OPC 40502", ("ActFeedrate",), context=_CHANNEL),
        ),
        _sig(
            "feed_override_pct", "spindle", "float", "gauge", f"{_CH}/CNC:FeedOverride",
            BrowseMatch("OPC 40502", ("FeedOverride",), context=_CHANNEL),
        ),
        _sig(
            "spindle_speed_rpm", "spindle", "float", "gauge", f"{_SP}/CNC:ActSpeed",
            BrowseMatch("OPC 40502", ("ActSpeed",), context=_SPINDLE),
            description="the KPI role spindle_speed_rpm: cutting needs speed > 0",
        ),
        _sig(
            "spindle_load_pct", "spindle", "float", "gauge", f"{_SP}/CNC:ActLoad",
            BrowseMatch("OPC 40502", ("ActLoad",), context=_SPINDLE),
            description="the KPI role spindle_load_pct: cutting above cutting_load_pct",
        ),
        _sig(
            "spindle_power_kw", "spindle", "float", "gauge", f"{_SP}/CNC:ActPower",
            BrowseMatch("OPC 40502", ("ActPower",), context=_SPINDLE),
        ),
        _sig(
            "spindle_override_pct", "spindle", "float", "gauge", f"{_SP}/CNC:ActOverride",
            BrowseMatch("OPC 40502", ("ActOverride",), context=_SPINDLE),
        ),
        _sig(
            "part_count", "counter", "int", "counter", None,
            *_PART_COUNT_BROWSE,
            description="produced parts, the KPI role parts_total. OPC 40502 1.0 defines no "
            "part counter: browse takes the machine's 40501 or 40001 counter or a vendor "
            "counter in the channel",
        ),
        _GOOD_COUNT, _SCRAP_COUNT, _REWORK_COUNT, _PRODUCT,
    ),
    {**_OPC40001_MAP, **_OPC40502_MAP},  # CNC machines also carry 40001 states
    _OPC40001_NEUTRAL | _OPC40502_NEUTRAL,
    {k: NS[k] for k in ("UA", "DI", "MA", "CNC")},
)  # fmt: skip

_PM = "PM:PackMLObject/PM:Status"
_PACKML = MachineProfile(
    StateProfile.PACKML,
    "PackML (ISA-TR88, OPC 30050): StateCurrent and UnitModeCurrent",
    (
        _sig(
            "packml_state", "machine_state", "int", "state", f"{_PM}/PM:StateCurrent",
            BrowseMatch("PackML", ("StateCurrent",)),
            description="StateCurrent: the 18 PackML states, Undefined 0 ... Complete 17",
        ),
        _sig(
            "packml_unit_mode", "machine_state", "int", "state", f"{_PM}/PM:UnitModeCurrent",
            BrowseMatch("PackML", ("UnitModeCurrent",)),
            description="UnitModeCurrent: Production 1, Maintenance 2, Manual 3, user modes",
        ),
        _sig(
            "machine_speed", "line", "float", "gauge", f"{_PM}/PM:CurMachSpeed",
            BrowseMatch("PackML", ("CurMachSpeed",)),
        ),
        _sig(
            "part_count", "counter", "int", "counter", None,
            BrowseMatch("PackML", ("ProdProcessedCount",)), *_PART_COUNT_BROWSE,
            description="processed products (the KPI role parts_total; Admin ProdProcessedCount)",
        ),
        _sig(
            "scrap_part_count", "counter", "int", "counter", None,
            BrowseMatch("PackML", ("ProdDefectiveCount",)),
            description="defective products (the KPI role parts_scrap; Admin ProdDefectiveCount)",
        ),
        _GOOD_COUNT, _REWORK_COUNT, _PRODUCT,
    ),
    _PACKML_MAP,
    _PACKML_NEUTRAL,
    {"UA": NS["UA"], "PM": NS["PM"]},
)  # fmt: skip

_CUSTOM = MachineProfile(
    StateProfile.CUSTOM,
    "custom state codes: signals and state_map come from the site model",
    (),
    {},
)

PROFILES: dict[StateProfile, MachineProfile] = {
    p.profile: p for p in (_OPC40502, _OPC40501, _OPC40001, _PACKML, _CUSTOM)
}


def profile_of(profile: StateProfile | str) -> MachineProfile:
    return PROFILES[StateProfile(profile)]


def render_doc() -> str:
    """``docs/PROFILES.md``: every profile's signals and state map, from this registry."""
    out = [
        "# Machine profiles",
        "",
        "Generated from `zhizao/profiles.py` by `python -m zhizao.profiles > docs/PROFILES.md`;",
        "a test fails when this file differs from the registry.",
        "",
        "A machine type that names a profile and lists no `signals` gets the profile's signals;",
        "its state map is the profile's, with the type's `state_map` entries on top. `zhizao",
        "gateway browse --emit-config` proposes these signal names for the variables it",
        "recognises. With several state signals the most restrictive state wins (NO_DATA >",
        "DELAY > SETUP > PLANNED_DOWN > IDLE > IN_CYCLE). Neutral codes are known and say",
        "nothing about the state; any other code without an entry is reported as unknown.",
        "",
    ]
    for p in PROFILES.values():
        out += [f"## `{p.profile.value}`", "", p.title, ""]
        if p.signals:
            out += [
                "| signal | meaning | measurement | type | kind | OPC UA path below the machine | recognised by browse |",
                "|---|---|---|---|---|---|---|",
            ]  # fmt: skip
            for s in p.signals:
                sc = s.signal
                seen = " or ".join(
                    f"{m.spec} `{'`/`'.join(m.names)}`"
                    + (f" under `{m.parent}`" if m.parent else "")
                    + (f" in `{m.context}`" if m.context else "")
                    for m in s.browse
                )
                path = f"`{sc.opcua_path}`" if sc.opcua_path else "-"
                cells = (
                    f"`{sc.name}`", s.description or "-", sc.measurement, sc.dtype, sc.kind, path,
                    seen or "-",
                )  # fmt: skip
                # a regex alternative must not end the table cell
                out.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
            out.append("")
        if p.state_map:
            out += ["| source code | platform state |", "|---|---|"]
            out += [f"| `{k}` | {v.value} |" for k, v in p.state_map.items()]
            out.append("")
        if p.neutral:
            out += ["Neutral codes: " + ", ".join(f"`{c}`" for c in sorted(p.neutral)), ""]
        if p.namespaces:
            out += ["Namespaces: " + ", ".join(f"`{k}` = {v}" for k, v in p.namespaces.items()), ""]
    return "\n".join(out).rstrip() + "\n"


if __name__ == "__main__":  # pragma: no cover - the doc generator
    print(render_doc(), end="")
