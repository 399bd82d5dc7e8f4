"""The site model: one schema for the asset hierarchy, machine types and their state maps, shift
calendars, products with ideal cycle times, and meters. The gateway, KPI engine, API and simulator
all read it (``zhizao sim site`` prints the simulator's factory in this format).
"""

from __future__ import annotations

import re
from datetime import date
from enum import StrEnum
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from zhizao.assets import AssetPath
from zhizao.config import StrictModel, load_model

__all__ = [
    "AreaConfig",
    "BreakConfig",
    "CalendarConfig",
    "LineConfig",
    "MachineConfig",
    "MachineState",
    "MachineTypeConfig",
    "MeterConfig",
    "ProductConfig",
    "ReasonCategory",
    "ReasonConfig",
    "ShiftConfig",
    "SignalConfig",
    "SiteModel",
    "StateProfile",
    "load_site",
]

_ID = r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$"
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
ALL_DAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class MachineState(StrEnum):
    """Platform states of DOMAIN.md section 3 (CUTTING is a subset of IN_CYCLE, a separate signal)."""

    PLANNED_DOWN = "PLANNED_DOWN"
    SETUP = "SETUP"
    IN_CYCLE = "IN_CYCLE"
    DELAY = "DELAY"
    IDLE = "IDLE"
    NO_DATA = "NO_DATA"


class StateProfile(StrEnum):
    """Which family of source state signals a machine type publishes."""

    OPC40502 = "opc40502"  # CNC: ChannelStatus, ActProgramStatus, ActOperationMode
    OPC40001 = "opc40001"  # Machinery: MachineryItemState, MachineryOperationMode
    OPC40501 = "opc40501"  # Machine tools: ChannelState, OperationMode, the active program
    PACKML = "packml"
    CUSTOM = "custom"  # state codes mapped by ``state_map``


class SignalConfig(StrictModel):
    """One signal a machine type publishes, and where a gateway finds it (optional master data)."""

    # platform signal name, lower_snake with the unit (spindle_speed_rpm, part_count)
    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    # InfluxDB measurement family (machine_state, counter, spindle, energy, ...)
    measurement: str
    dtype: Literal["float", "int", "bool", "string"] = "float"
    # state: a state code; counter: monotonic except at resets/rollover; gauge: a sampled value
    kind: Literal["state", "counter", "gauge", "text"] = "gauge"
    # OPC UA browse path below the machine object, "<prefix>:<BrowseName>/..." with the prefixes
    # of the machine type's ``namespaces``
    opcua_path: str | None = None
    rollover: float | None = Field(default=None, gt=0)


class MachineTypeConfig(StrictModel):
    """A kind of machine: where its states come from and how they map to platform states."""

    profile: StateProfile
    description: str = ""
    # source state code (as published, e.g. "Executing" or "7", or "<signal>=<code>" where the
    # code alone is ambiguous) -> platform state
    state_map: dict[str, MachineState] = Field(default_factory=dict)
    # signals of this type (for mapping without hand-written configuration); prefix -> OPC UA
    # namespace URI for the ``opcua_path`` of the signals
    signals: list[SignalConfig] = Field(default_factory=list)
    namespaces: dict[str, str] = Field(default_factory=dict)
    # spindle load (percent) above which an in-cycle machine counts as cutting
    cutting_load_pct: float = Field(default=5.0, ge=0, le=100)
    # treat a program in "Waiting" (dwell) as in cycle
    waiting_is_in_cycle: bool = True

    @model_validator(mode="before")
    @classmethod
    def _profile_defaults(cls, data: object) -> object:
        """A type that lists no signals gets its profile's (``zhizao.profiles``), so a standard
        machine needs only ``profile:``; listing signals replaces them all."""
        if not isinstance(data, dict) or data.get("signals"):
            return data
        from zhizao.profiles import PROFILES

        try:
            profile = PROFILES[StateProfile(str(data.get("profile")))]
        except ValueError:
            return data  # the field validator names the bad profile
        out = {**data, "signals": profile.signal_configs()}
        if not data.get("namespaces"):
            out["namespaces"] = dict(profile.namespaces)
        return out


class ProductConfig(StrictModel):
    """A product with its planned run time per item (ideal cycle time, PRI)."""

    id: str = Field(pattern=_ID)
    name: str = ""
    ideal_cycle_s: float = Field(
        gt=0, description="PRI in seconds per item, default for all machines"
    )
    # machine id -> PRI in seconds on that machine, where it differs
    ideal_cycle_s_by_machine: dict[str, float] = Field(default_factory=dict)
    # gross output value per good unit in CNY (for value-added estimates in the demo)
    unit_value_cny: float | None = Field(default=None, ge=0)

    def pri_s(self, machine: str) -> float:
        return self.ideal_cycle_s_by_machine.get(machine, self.ideal_cycle_s)


_HHMM = re.compile(r"^([01]\d|2[0-4]):[0-5]\d$")


def _parse_hhmm(text: str) -> int:
    """Minutes after midnight; ``24:00`` is allowed as an end."""
    if not _HHMM.match(text):
        raise ValueError(f"time {text!r} is not HH:MM")
    h, m = (int(x) for x in text.split(":"))
    if h == 24 and m:
        raise ValueError(f"time {text!r} is after 24:00")
    return h * 60 + m


class BreakConfig(StrictModel):
    """Planned down time inside a shift (break, lunch, planned maintenance)."""

    name: str = "break"
    start: str
    end: str
    kind: Literal["break", "maintenance", "meeting"] = "break"

    @model_validator(mode="after")
    def _check(self) -> BreakConfig:
        _parse_hhmm(self.start)
        _parse_hhmm(self.end)
        return self


class ShiftConfig(StrictModel):
    """A shift; ``end`` before ``start`` crosses midnight and belongs to the day it starts."""

    name: str = Field(pattern=_ID)
    start: str
    end: str
    days: list[Weekday] = Field(default_factory=lambda: list(ALL_DAYS[:5]))
    breaks: list[BreakConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check(self) -> ShiftConfig:
        s, e = _parse_hhmm(self.start), _parse_hhmm(self.end)
        if s == e:
            raise ValueError(f"shift {self.name!r} has zero length")
        return self

    @property
    def start_min(self) -> int:
        return _parse_hhmm(self.start)

    @property
    def end_min(self) -> int:
        """End in minutes after the start day's midnight (> 1440 when crossing midnight)."""
        e = _parse_hhmm(self.end)
        return e if e > self.start_min else e + 1440

    @property
    def length_min(self) -> int:
        return self.end_min - self.start_min


class CalendarConfig(StrictModel):
    """A shift calendar in the factory's local time."""

    timezone: str = "Asia/Shanghai"
    shifts: list[ShiftConfig]
    holidays: list[date] = Field(default_factory=list)
    # whether "no order / waiting" time counts as planned down (default: ADOT, an availability loss)
    no_order_is_planned_down: bool = False


class MeterConfig(StrictModel):
    """A meter: what it measures, in which unit, and how its counter behaves."""

    id: str = Field(pattern=_ID)
    medium: Literal[
        "electricity",
        "natural_gas",
        "water",
        "steam",
        "heat",
        "diesel",
        "gasoline",
        "compressed_air",
    ]
    unit: Literal["kWh", "m3", "kg", "MJ", "t"]
    # signal name carrying the cumulative counter (unit in the name, e.g. energy_kwh)
    signal: str
    # counter rolls over to 0 after this value (None: only resets)
    rollover: float | None = Field(default=None, gt=0)
    # asset the meter belongs to (machine path under the site, "" for the whole site)
    asset: str = ""
    # purchased from outside the site (counted in energy/CO2) or produced on site (not counted again)
    purchased: bool = True
    # renewable energy (on-site solar or wind, or a contracted green-power supply on its own
    # meter): a site-level renewable meter makes the site's renewable share computable
    renewable: bool = False
    # MQTT topic carrying the counter, where the meter publishes plain JSON per tag
    mqtt_topic: str | None = None


class MachineConfig(StrictModel):
    id: str = Field(pattern=_ID)
    type: str
    cell: str | None = None
    key_process: bool = False
    nc_controlled: bool = False
    networked: bool = True
    original_value_cny: float | None = Field(default=None, ge=0)
    calendar: str | None = None  # overrides the line's calendar
    # its good parts are the site's output (water and energy per unit of the plant divide by
    # them); None: the last machine of its line is the line's output
    output: bool | None = None


class LineConfig(StrictModel):
    id: str = Field(pattern=_ID)
    name: str = ""
    calendar: str
    machines: list[MachineConfig]


class AreaConfig(StrictModel):
    id: str = Field(pattern=_ID)
    name: str = ""
    lines: list[LineConfig]


ReasonCategory = Literal[
    "breakdown", "setup", "material", "quality", "no_order", "planned", "minor_stop", "other"
]


class ReasonConfig(StrictModel):
    """A stop reason an operator can assign to a stop; ``parent`` makes a tree."""

    code: str = Field(pattern=_ID)
    label: str
    label_zh: str = ""
    category: ReasonCategory
    parent: str | None = None


class SiteModel(StrictModel):
    """One factory (site) with everything the platform needs to know about it."""

    enterprise: str = Field(pattern=_ID)
    site: str = Field(pattern=_ID)
    name: str = ""
    district: str = ""
    timezone: str = "Asia/Shanghai"
    machine_types: dict[str, MachineTypeConfig]
    calendars: dict[str, CalendarConfig]
    products: list[ProductConfig] = Field(default_factory=list)
    areas: list[AreaConfig]
    meters: list[MeterConfig] = Field(default_factory=list)
    # stop-reason tree (operators assign these to stops through the API)
    reasons: list[ReasonConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _references(self) -> SiteModel:
        seen: set[str] = set()
        for area in self.areas:
            for line in area.lines:
                if line.calendar not in self.calendars:
                    raise ValueError(
                        f"line {line.id!r} uses unknown calendar {line.calendar!r}; "
                        f"known: {sorted(self.calendars)}"
                    )
                for m in line.machines:
                    if m.type not in self.machine_types:
                        raise ValueError(
                            f"machine {m.id!r} has unknown type {m.type!r}; "
                            f"known: {sorted(self.machine_types)}"
                        )
                    if m.calendar is not None and m.calendar not in self.calendars:
                        raise ValueError(f"machine {m.id!r} uses unknown calendar {m.calendar!r}")
                    if m.id in seen:
                        raise ValueError(f"machine id {m.id!r} appears twice in the site")
                    seen.add(m.id)
        ids = [p.id for p in self.products]
        if len(ids) != len(set(ids)):
            raise ValueError("product ids must be unique")
        meter_ids = [m.id for m in self.meters]
        if len(meter_ids) != len(set(meter_ids)):
            raise ValueError("meter ids must be unique")
        codes: set[str] = set()
        for r in self.reasons:
            if r.code in codes:
                raise ValueError(f"reason code {r.code!r} appears twice in the site")
            codes.add(r.code)
        for r in self.reasons:
            if r.parent is not None and r.parent not in codes:
                raise ValueError(
                    f"reason {r.code!r} has unknown parent {r.parent!r}; add that reason first"
                )
            if r.parent == r.code:
                raise ValueError(f"reason {r.code!r} cannot be its own parent")
        parent = {r.code: r.parent for r in self.reasons}
        for r in self.reasons:
            chain = [r.code]
            up = parent[r.code]
            while up is not None:
                if up in chain:
                    loop = " -> ".join([*chain[chain.index(up) :], up])
                    raise ValueError(f"reasons {loop} form a cycle; a reason tree has a root")
                chain.append(up)
                up = parent[up]
        return self

    def machine_paths(self) -> dict[str, AssetPath]:
        """Machine id -> its ISA-95 path."""
        out: dict[str, AssetPath] = {}
        for area in self.areas:
            for line in area.lines:
                for m in line.machines:
                    out[m.id] = AssetPath(
                        self.enterprise, self.site, area.id, line.id, m.cell, m.id
                    )
        return out

    def machines(self) -> list[tuple[AreaConfig, LineConfig, MachineConfig]]:
        return [(a, ln, m) for a in self.areas for ln in a.lines for m in ln.machines]

    def output_machines(self) -> list[str]:
        """The machines whose good parts are the site's output: those marked ``output: true``,
        and on each line without any mark the last machine (the end of the line; its upstream
        machines' parts are in it, so summing every machine would count a part once per
        operation)."""
        out: list[str] = []
        for area in self.areas:
            for line in area.lines:
                marked = [m.id for m in line.machines if m.output]
                if marked:
                    out += marked
                elif line.machines and line.machines[-1].output is None:
                    out.append(line.machines[-1].id)
        return out

    def calendar_for(self, machine_id: str) -> CalendarConfig:
        for _, line, m in self.machines():
            if m.id == machine_id:
                return self.calendars[m.calendar or line.calendar]
        raise KeyError(machine_id)

    def product(self, product_id: str) -> ProductConfig:
        for p in self.products:
            if p.id == product_id:
                return p
        raise KeyError(product_id)


def load_site(path: str | Path) -> SiteModel:
    """Load and validate a site model YAML file."""
    return load_model(SiteModel, path)
