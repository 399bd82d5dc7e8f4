"""What the OPC UA server publishes, derived from the scenario: one change table of
(simulated time, variable, value) per server shard.

This is a pure function of the scenario, so tests can compare what a client received with what
the scenario says without any server running. During a connection drop the machine's variables
carry a bad status; when it ends they are published again with their current values.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from simulator.config import NS_CNC, NS_MACHINERY, NS_PACKML, NS_SIM
from simulator.scenario import DELAY, IDLE, IN_CYCLE, SETUP, Scenario
from zhizao.site import StateProfile

__all__ = [
    "BAD",
    "ChangeTable",
    "VarSpec",
    "build_change_table",
    "machine_variables",
]

BAD = object()  # marker value: the variable's status is bad (connection lost)
NS_UA = "http://opcfoundation.org/UA/"

# OPC 40502 enumerations (CncChannelStatus, CncChannelProgStatus, CncOperationMode)
CH_ACTIVE, CH_INTERRUPTED, CH_RESET = 0, 1, 2
PROG_STOPPED, PROG_RUNNING, PROG_WAITING, PROG_INTERRUPTED, PROG_CANCELED = range(5)
MODE_MANUAL, MODE_MDA, MODE_AUTOMATIC = range(3)
# PackML (ISA-TR88) StateCurrent and UnitModeCurrent codes used here
PACKML_STOPPED, PACKML_IDLE, PACKML_SUSPENDED, PACKML_EXECUTE = 2, 4, 5, 6
PACKML_ABORTED, PACKML_HELD = 9, 11
UNIT_PRODUCTION, UNIT_CHANGEOVER = 1, 4


@dataclass(frozen=True, slots=True)
class VarSpec:
    """One OPC UA variable of a machine: its browse path below the machine object."""

    machine: int
    key: str  # short name, unique per machine (e.g. "channel_status")
    path: tuple[tuple[str, str], ...]  # (namespace URI, browse name) from the machine object down
    vtype: str  # asyncua VariantType name, or "LocalizedText"
    initial: Any

    @property
    def node_id(self) -> str:
        return ".".join(name for _, name in self.path)


def _cnc_vars(mi: int) -> list[VarSpec]:
    ch = ((NS_CNC, "CncInterface"), (NS_CNC, "CncChannelList"), (NS_CNC, "Channel1"))
    sp = ((NS_CNC, "CncInterface"), (NS_CNC, "CncSpindleList"), (NS_CNC, "Spindle1"))
    bb = ((NS_MACHINERY, "MachineryBuildingBlocks"),)
    return [
        VarSpec(mi, "channel_status", (*ch, (NS_CNC, "ChannelStatus")), "Int32", CH_RESET),
        VarSpec(mi, "program_status", (*ch, (NS_CNC, "ActProgramStatus")), "Int32", PROG_STOPPED),
        VarSpec(mi, "operation_mode", (*ch, (NS_CNC, "ActOperationMode")), "Int32", MODE_AUTOMATIC),
        VarSpec(mi, "feed_override_pct", (*ch, (NS_CNC, "FeedOverride")), "Double", 100.0),
        VarSpec(mi, "program_name", (*ch, (NS_CNC, "ActMainProgramName")), "String", ""),
        VarSpec(mi, "spindle_speed_rpm", (*sp, (NS_CNC, "ActSpeed")), "Double", 0.0),
        VarSpec(mi, "spindle_load_pct", (*sp, (NS_CNC, "ActLoad")), "Double", 0.0),
        VarSpec(mi, "spindle_status", (*sp, (NS_CNC, "ActStatus")), "Int32", 0),
        VarSpec(mi, "spindle_override_pct", (*sp, (NS_CNC, "Override")), "Double", 100.0),
        VarSpec(
            mi,
            "machinery_item_state",
            (*bb, (NS_MACHINERY, "MachineryItemState"), (NS_UA, "CurrentState")),
            "LocalizedText",
            "NotExecuting",
        ),
        VarSpec(
            mi,
            "machinery_operation_mode",
            (*bb, (NS_MACHINERY, "MachineryOperationMode"), (NS_UA, "CurrentState")),
            "LocalizedText",
            "Processing",
        ),
        VarSpec(
            mi, "alarm_active", ((NS_SIM, "Alarms"), (NS_SIM, "AlarmActive")), "Boolean", False
        ),
        VarSpec(mi, "alarm_text", ((NS_SIM, "Alarms"), (NS_SIM, "AlarmText")), "String", ""),
    ]


def _packml_vars(mi: int) -> list[VarSpec]:
    st = ((NS_PACKML, "PackMLObject"), (NS_PACKML, "Status"))
    return [
        VarSpec(mi, "packml_state", (*st, (NS_PACKML, "StateCurrent")), "Int32", PACKML_IDLE),
        VarSpec(
            mi, "packml_unit_mode", (*st, (NS_PACKML, "UnitModeCurrent")), "Int32", UNIT_PRODUCTION
        ),
        VarSpec(mi, "line_speed_pct", (*st, (NS_PACKML, "CurMachSpeed")), "Double", 0.0),
    ]


def _common_vars(mi: int) -> list[VarSpec]:
    prod = (NS_SIM, "Production")
    return [
        VarSpec(mi, "product_id", (prod, (NS_SIM, "ProductId")), "String", ""),
        VarSpec(mi, "part_count", (prod, (NS_SIM, "PartCounter")), "UInt32", 0),
        VarSpec(mi, "good_part_count", (prod, (NS_SIM, "GoodPartCounter")), "UInt32", 0),
        VarSpec(mi, "scrap_part_count", (prod, (NS_SIM, "ScrapPartCounter")), "UInt32", 0),
        VarSpec(mi, "rework_part_count", (prod, (NS_SIM, "ReworkPartCounter")), "UInt32", 0),
        VarSpec(
            mi,
            "parts_produced_lifetime",
            ((NS_MACHINERY, "Monitoring"), (NS_MACHINERY, "PartsProducedInLifetime")),
            "UInt64",
            0,
        ),
    ]


def machine_variables(sc: Scenario, mi: int) -> list[VarSpec]:
    """The event-driven variables of machine ``mi`` (extra load signals are separate)."""
    profile = sc.machines[mi].profile
    specific = _packml_vars(mi) if profile is StateProfile.PACKML else _cnc_vars(mi)
    return specific + _common_vars(mi)


def _cnc_state_values(state: int, reason: str, product: str | None, feed: float) -> dict[str, Any]:
    program = f"O{product}.MPF" if product else ""
    alarm = reason in ("breakdown", "power_cycle")
    alarm_text = {"breakdown": "EX1024 spindle drive fault", "power_cycle": "power failure"}
    if state == IN_CYCLE:
        v = (CH_ACTIVE, PROG_RUNNING, MODE_AUTOMATIC, "Executing", "Processing")
    elif state == SETUP:
        v = (CH_ACTIVE, PROG_STOPPED, MODE_MANUAL, "Executing", "Setup")
    elif state == DELAY:
        v = (CH_INTERRUPTED, PROG_INTERRUPTED, MODE_AUTOMATIC, "OutOfService", "Processing")
    else:  # IDLE and PLANNED_DOWN: the machine is ready and waits (the calendar says which)
        v = (CH_RESET, PROG_STOPPED, MODE_AUTOMATIC, "NotExecuting", "Processing")
    out: dict[str, Any] = dict(
        zip(
            (
                "channel_status",
                "program_status",
                "operation_mode",
                "machinery_item_state",
                "machinery_operation_mode",
            ),
            v,
            strict=True,
        )
    )
    out["alarm_active"] = alarm
    out["alarm_text"] = alarm_text.get(reason, "")
    out["feed_override_pct"] = feed if state == IN_CYCLE else 100.0
    if product:
        out["program_name"] = program
        out["product_id"] = product
    return out


def _packml_state_values(
    state: int, reason: str, product: str | None, feed: float
) -> dict[str, Any]:
    if state == IN_CYCLE:
        code, mode, speed = PACKML_EXECUTE, UNIT_PRODUCTION, feed
    elif state == SETUP:
        code, mode, speed = PACKML_IDLE, UNIT_CHANGEOVER, 0.0
    elif state == DELAY:
        code = PACKML_HELD if reason == "micro_stop" else PACKML_ABORTED
        mode, speed = UNIT_PRODUCTION, 0.0
    elif state == IDLE:
        code = PACKML_SUSPENDED if reason == "waiting_material" else PACKML_IDLE
        mode, speed = UNIT_PRODUCTION, 0.0
    else:
        code, mode, speed = PACKML_STOPPED, UNIT_PRODUCTION, 0.0
    out: dict[str, Any] = {"packml_state": code, "packml_unit_mode": mode, "line_speed_pct": speed}
    if product:
        out["product_id"] = product
    return out


@dataclass(frozen=True)
class ChangeTable:
    """Value changes in simulated time, sorted by time (stable)."""

    variables: list[VarSpec]
    ts_ns: NDArray[np.int64]
    var: NDArray[np.int32]  # index into ``variables``
    values: list[Any]  # Python values, or ``BAD``

    def initial_values(self, at_ns: int) -> dict[int, Any]:
        """Each variable's value at ``at_ns`` (the last change at or before it)."""
        j = int(np.searchsorted(self.ts_ns, at_ns, side="right"))
        out: dict[int, Any] = {i: v.initial for i, v in enumerate(self.variables)}
        for k in range(j):
            out[int(self.var[k])] = self.values[k]
        return out


def build_change_table(sc: Scenario, machines: list[int]) -> ChangeTable:
    """All value changes of ``machines`` over the scenario (the server of a shard plays these)."""
    variables: list[VarSpec] = []
    ts_all: list[NDArray[np.int64]] = []
    var_all: list[NDArray[np.int32]] = []
    val_all: list[Any] = []
    for mi in machines:
        specs = machine_variables(sc, mi)
        base = len(variables)
        index = {v.key: base + i for i, v in enumerate(specs)}
        variables.extend(specs)
        changes: dict[str, tuple[list[int], list[Any]]] = {v.key: ([], []) for v in specs}
        last: dict[str, Any] = {v.key: v.initial for v in specs}

        def put(key: str, ts: int, value: Any, changes: Any = changes, last: Any = last) -> None:
            if key in last and last[key] == value and changes[key][0]:
                return
            last[key] = value
            changes[key][0].append(ts)
            changes[key][1].append(value)

        profile = sc.machines[mi].profile
        state_values = _packml_state_values if profile is StateProfile.PACKML else _cnc_state_values
        beh = sc.config.behaviour_for(sc.machines[mi].id)
        sel = np.flatnonzero(sc.st_machine == mi)
        # events of one machine in time order: state starts, cutting edges, parts, resets
        ev: list[tuple[int, int, int]] = []  # (ts, order, index)
        ev += [(int(sc.st_start_ns[i]), 0, int(i)) for i in sel]
        csel = np.flatnonzero(sc.cut_machine == mi)
        ev += [(int(sc.cut_start_ns[i]), 1, int(i)) for i in csel]
        ev += [(int(sc.cut_end_ns[i]), 2, int(i)) for i in csel]
        psel = np.flatnonzero(sc.part_machine == mi)
        ev += [(int(sc.part_ts_ns[i]), 3, int(i)) for i in psel]
        rsel = np.flatnonzero(sc.reset_machine == mi)
        ev += [(int(sc.reset_ts_ns[i]), 4, int(i)) for i in rsel]
        ev.sort()
        counts = [int(x) for x in sc.initial_counts[mi]]
        t0 = sc.start_ns
        for key, value in zip(
            ("part_count", "good_part_count", "scrap_part_count", "rework_part_count"),
            counts[:4],
            strict=True,
        ):
            put(key, t0, value % 65536)
        put("parts_produced_lifetime", t0, counts[4])
        for ts, kind, i in ev:
            if kind == 0:
                state = int(sc.st_state[i])
                reason = sc.reasons[int(sc.st_reason[i])]
                p = int(sc.st_product[i])
                product = sc.products[p] if p >= 0 else None
                feed = 100.0 * (beh.reduced_speed_factor if reason == "reduced_speed" else 1.0)
                for key, value in state_values(state, reason, product, feed).items():
                    put(key, ts, value)
            elif kind == 1:
                put("spindle_speed_rpm", ts, float(sc.cut_speed_rpm[i]))
                put("spindle_load_pct", ts, float(sc.cut_load_pct[i]))
                put("spindle_status", ts, 1)
            elif kind == 2:
                put("spindle_speed_rpm", ts, 0.0)
                put("spindle_load_pct", ts, 0.0)
                put("spindle_status", ts, 0)
            elif kind == 3:
                outcome = int(sc.part_outcome[i])
                counts[0] += 1
                counts[1 + outcome] += 1
                counts[4] += 1
                put("part_count", ts, counts[0] % 65536)
                key = ("good_part_count", "scrap_part_count", "rework_part_count")[outcome]
                put(key, ts, counts[1 + outcome] % 65536)
                put("parts_produced_lifetime", ts, counts[4])
            else:
                counts[:4] = [0, 0, 0, 0]
                for key in (
                    "part_count",
                    "good_part_count",
                    "scrap_part_count",
                    "rework_part_count",
                ):
                    put(key, ts, 0)
        # every variable has a value from the scenario's start on
        for spec in specs:
            ts_list, val_list = changes[spec.key]
            if not ts_list or ts_list[0] > t0:
                ts_list.insert(0, t0)
                val_list.insert(0, spec.initial)
        # connection drops: bad status from the start, current values again at the end
        dsel = np.flatnonzero(sc.drop_machine == mi)
        for key, (ts_list, val_list) in changes.items():
            ts_arr = np.asarray(ts_list, dtype=np.int64)
            vals: list[Any] = list(val_list)
            for d in dsel.tolist():
                d0, d1 = int(sc.drop_start_ns[d]), int(sc.drop_end_ns[d])
                before_end = int(np.searchsorted(ts_arr, d1, side="left"))
                current = vals[before_end - 1] if before_end > 0 else None
                keep = (ts_arr < d0) | (ts_arr >= d1)
                kept_ts = ts_arr[keep].tolist()
                kept_vals = [v for v, k in zip(vals, keep.tolist(), strict=True) if k]
                pos = int(np.searchsorted(np.asarray(kept_ts, dtype=np.int64), d0, side="left"))
                insert_ts = [d0]
                insert_vals: list[Any] = [BAD]
                if current is not None:
                    insert_ts.append(d1)
                    insert_vals.append(current)
                kept_ts[pos:pos] = insert_ts
                kept_vals[pos:pos] = insert_vals
                ts_arr = np.asarray(kept_ts, dtype=np.int64)
                vals = kept_vals
            ts_all.append(ts_arr)
            var_all.append(np.full(len(ts_arr), index[key], dtype=np.int32))
            val_all.extend(vals)
    ts_cat = np.concatenate(ts_all) if ts_all else np.zeros(0, dtype=np.int64)
    var_cat = np.concatenate(var_all) if var_all else np.zeros(0, dtype=np.int32)
    order = np.argsort(ts_cat, kind="stable")
    values = [val_all[k] for k in order.tolist()]
    return ChangeTable(variables, ts_cat[order], var_cat[order], values)
