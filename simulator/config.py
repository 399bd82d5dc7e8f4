"""Configuration of the demonstration factory: the site model it simulates plus its behaviour.

Everything has a default, so ``SimConfig()`` is the default factory (one machining line with three
CNC machines, one assembly line, plant electricity, gas and water meters, a compressor published as
a Sparkplug B edge node). ``machines: N`` replaces the machining line by N CNC machines and
``signals_per_machine: K`` adds K analog signals per machine, for load tests.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, model_validator

from zhizao.config import StrictModel, load_model
from zhizao.site import (
    AreaConfig,
    BreakConfig,
    CalendarConfig,
    LineConfig,
    MachineConfig,
    MachineState,
    MachineTypeConfig,
    MeterConfig,
    ProductConfig,
    ReasonConfig,
    ShiftConfig,
    SignalConfig,
    SiteModel,
    StateProfile,
)

__all__ = [
    "NS_CNC",
    "NS_DI",
    "NS_MACHINERY",
    "NS_PACKML",
    "NS_SIM",
    "BehaviourConfig",
    "PowerConfig",
    "SimConfig",
    "load_sim_config",
]

# OPC UA namespace URIs of the companion specifications the machines are shaped like
NS_CNC = "http://opcfoundation.org/UA/CNC/"  # OPC 40502
NS_MACHINERY = "http://opcfoundation.org/UA/Machinery/"  # OPC 40001-1
NS_DI = "http://opcfoundation.org/UA/DI/"  # OPC 10000-100
NS_PACKML = "http://opcfoundation.org/UA/PackML/"  # OPC 30050
NS_SIM = "urn:zhizao:simulator"  # instances and the few nodes no companion spec defines

CNC_TYPE = "cnc-mill"
ASSEMBLY_TYPE = "assembly-cell"


class BehaviourConfig(StrictModel):
    """Stochastic behaviour of a machine. Rates are per hour of planned busy time."""

    breakdown_per_h: float = Field(default=0.12, ge=0)
    breakdown_min_s: float = Field(default=300.0, gt=0)
    breakdown_max_s: float = Field(default=3600.0, gt=0)
    # share of breakdowns that end with a power cycle (part counters reset to 0)
    power_cycle_share: float = Field(default=0.3, ge=0, le=1)
    micro_stop_per_h: float = Field(default=4.0, ge=0)
    micro_stop_min_s: float = Field(default=5.0, gt=0)
    micro_stop_max_s: float = Field(default=90.0, gt=0)
    waiting_per_h: float = Field(default=0.25, ge=0)
    waiting_min_s: float = Field(default=120.0, gt=0)
    waiting_max_s: float = Field(default=900.0, gt=0)
    setup_min_s: float = Field(default=900.0, gt=0)
    setup_max_s: float = Field(default=2700.0, gt=0)
    order_parts_min: int = Field(default=60, gt=0)
    order_parts_max: int = Field(default=240, gt=0)
    # probability that an order runs at reduced speed, and the speed factor then
    reduced_speed_share: float = Field(default=0.15, ge=0, le=1)
    reduced_speed_factor: float = Field(default=0.85, gt=0, le=1)
    # cycle time = PRI / speed factor * (1 + |N(0, jitter)|): never faster than ideal
    cycle_jitter: float = Field(default=0.03, ge=0)
    scrap_share: float = Field(default=0.015, ge=0, le=1)
    rework_share: float = Field(default=0.01, ge=0, le=1)
    # part of a cycle in which the spindle cuts (load above the type's cutting threshold)
    cutting_share: float = Field(default=0.75, gt=0, le=1)

    @model_validator(mode="after")
    def _ranges(self) -> BehaviourConfig:
        for lo, hi in (
            ("breakdown_min_s", "breakdown_max_s"),
            ("micro_stop_min_s", "micro_stop_max_s"),
            ("waiting_min_s", "waiting_max_s"),
            ("setup_min_s", "setup_max_s"),
            ("order_parts_min", "order_parts_max"),
        ):
            if getattr(self, lo) > getattr(self, hi):
                raise ValueError(f"{lo} must not exceed {hi}")
        return self


class PowerConfig(StrictModel):
    """Electric power draw of a machine per state, in kW."""

    off_shift_kw: float = Field(default=1.2, ge=0)  # standby outside the shifts and in breaks
    idle_kw: float = Field(default=3.5, ge=0)
    setup_kw: float = Field(default=4.5, ge=0)
    in_cycle_kw: float = Field(
        default=9.0, ge=0
    )  # in cycle, not cutting (rapid moves, tool change)
    cutting_kw: float = Field(default=22.0, ge=0)
    delay_kw: float = Field(default=3.0, ge=0)


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def default_calendar() -> CalendarConfig:
    """Two shifts with breaks and a lunch, a non-working night; every day of the week so that
    the demo shows data whatever day it is started."""
    days = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
    return CalendarConfig(
        timezone="Asia/Shanghai",
        shifts=[
            ShiftConfig(
                name="early",
                start="06:00",
                end="14:00",
                days=days,  # type: ignore[arg-type]
                breaks=[
                    BreakConfig(name="break", start="09:00", end="09:15"),
                    BreakConfig(name="lunch", start="11:30", end="12:00"),
                ],
            ),
            ShiftConfig(
                name="late",
                start="14:00",
                end="22:00",
                days=days,  # type: ignore[arg-type]
                breaks=[
                    BreakConfig(name="break", start="17:00", end="17:15"),
                    BreakConfig(name="dinner", start="19:00", end="19:30"),
                ],
            ),
        ],
    )


def _cnc_type() -> MachineTypeConfig:
    prefixes = {
        "CNC": NS_CNC,
        "MA": NS_MACHINERY,
        "DI": NS_DI,
        "ZS": NS_SIM,
        "UA": "http://opcfoundation.org/UA/",
    }
    channel = "CNC:CncInterface/CNC:CncChannelList/CNC:Channel1"
    spindle = "CNC:CncInterface/CNC:CncSpindleList/CNC:Spindle1"
    bb = "MA:MachineryBuildingBlocks"
    signals = [
        SignalConfig(
            name="channel_status",
            measurement="machine_state",
            dtype="int",
            kind="state",
            opcua_path=f"{channel}/CNC:ChannelStatus",
        ),
        SignalConfig(
            name="program_status",
            measurement="machine_state",
            dtype="int",
            kind="state",
            opcua_path=f"{channel}/CNC:ActProgramStatus",
        ),
        SignalConfig(
            name="operation_mode",
            measurement="machine_state",
            dtype="int",
            kind="state",
            opcua_path=f"{channel}/CNC:ActOperationMode",
        ),
        SignalConfig(
            name="machinery_item_state",
            measurement="machine_state",
            dtype="string",
            kind="state",
            opcua_path=f"{bb}/MA:MachineryItemState/UA:CurrentState",
        ),
        SignalConfig(
            name="machinery_operation_mode",
            measurement="machine_state",
            dtype="string",
            kind="state",
            opcua_path=f"{bb}/MA:MachineryOperationMode/UA:CurrentState",
        ),
        SignalConfig(
            name="program_name",
            measurement="machine_state",
            dtype="string",
            kind="text",
            opcua_path=f"{channel}/CNC:ActMainProgramName",
        ),
        SignalConfig(
            name="product_id",
            measurement="machine_state",
            dtype="string",
            kind="text",
            opcua_path="ZS:Production/ZS:ProductId",
        ),
        SignalConfig(
            name="feed_override_pct",
            measurement="spindle",
            opcua_path=f"{channel}/CNC:FeedOverride",
        ),
        SignalConfig(
            name="spindle_speed_rpm", measurement="spindle", opcua_path=f"{spindle}/CNC:ActSpeed"
        ),
        SignalConfig(
            name="spindle_load_pct", measurement="spindle", opcua_path=f"{spindle}/CNC:ActLoad"
        ),
        SignalConfig(
            name="alarm_active",
            measurement="machine_state",
            dtype="bool",
            kind="state",
            opcua_path="ZS:Alarms/ZS:AlarmActive",
        ),
        SignalConfig(
            name="alarm_text",
            measurement="machine_state",
            dtype="string",
            kind="text",
            opcua_path="ZS:Alarms/ZS:AlarmText",
        ),
        *_counter_signals(),
    ]
    return MachineTypeConfig(
        profile=StateProfile.OPC40502,
        description="3-axis CNC milling machine shaped like OPC 40502 (CNC) and OPC 40001-1",
        state_map={
            "machinery_item_state=NotAvailable": MachineState.NO_DATA,
            "machinery_item_state=OutOfService": MachineState.DELAY,
            "machinery_item_state=NotExecuting": MachineState.IDLE,
            "machinery_item_state=Executing": MachineState.IN_CYCLE,
            "machinery_operation_mode=Setup": MachineState.SETUP,
        },
        cutting_load_pct=20.0,
        signals=signals,
        namespaces=prefixes,
    )


def _counter_signals() -> list[SignalConfig]:
    return [
        SignalConfig(
            name=name,
            measurement="counter",
            dtype="int",
            kind="counter",
            opcua_path=f"ZS:Production/ZS:{browse}",
            rollover=65536,
        )
        for name, browse in (
            ("part_count", "PartCounter"),
            ("good_part_count", "GoodPartCounter"),
            ("scrap_part_count", "ScrapPartCounter"),
            ("rework_part_count", "ReworkPartCounter"),
        )
    ] + [
        SignalConfig(
            name="parts_produced_lifetime",
            measurement="counter",
            dtype="int",
            kind="counter",
            opcua_path="MA:Monitoring/MA:PartsProducedInLifetime",
        )
    ]


def _assembly_type() -> MachineTypeConfig:
    signals = [
        SignalConfig(
            name="packml_state",
            measurement="machine_state",
            dtype="int",
            kind="state",
            opcua_path="PM:PackMLObject/PM:Status/PM:StateCurrent",
        ),
        SignalConfig(
            name="packml_unit_mode",
            measurement="machine_state",
            dtype="int",
            kind="state",
            opcua_path="PM:PackMLObject/PM:Status/PM:UnitModeCurrent",
        ),
        SignalConfig(
            name="line_speed_pct",
            measurement="line",
            opcua_path="PM:PackMLObject/PM:Status/PM:CurMachSpeed",
        ),
        SignalConfig(
            name="product_id",
            measurement="machine_state",
            dtype="string",
            kind="text",
            opcua_path="ZS:Production/ZS:ProductId",
        ),
        *_counter_signals(),
    ]
    return MachineTypeConfig(
        profile=StateProfile.PACKML,
        description="assembly cell with a PackML-like state model (ISA-TR88, OPC 30050)",
        # PackML StateCurrent codes; unit mode 4 is this line's changeover mode
        state_map={
            "packml_state=6": MachineState.IN_CYCLE,  # Execute
            "packml_state=4": MachineState.IDLE,  # Idle
            "packml_state=5": MachineState.IDLE,  # Suspended (starved / waiting)
            "packml_state=2": MachineState.IDLE,  # Stopped
            "packml_state=11": MachineState.DELAY,  # Held (micro stop)
            "packml_state=9": MachineState.DELAY,  # Aborted (breakdown)
            "packml_unit_mode=4": MachineState.SETUP,  # Changeover
        },
        cutting_load_pct=0.0,
        signals=signals,
        namespaces={"PM": NS_PACKML, "ZS": NS_SIM, "MA": NS_MACHINERY},
    )


def default_site(cnc_machines: int = 3) -> SiteModel:
    """The simulated factory in the shared site-model format."""
    enterprise, site = "zhizao-demo", "pudong-1"
    width = 1 if cnc_machines <= 9 else len(str(cnc_machines))
    cnc_ids = [f"CNC{i + 1:0{width}d}" for i in range(cnc_machines)]
    machines = [
        MachineConfig(
            id=mid, type=CNC_TYPE, key_process=True, nc_controlled=True, original_value_cny=850_000
        )
        for mid in cnc_ids
    ]
    meters = [
        MeterConfig(
            id=f"em-{mid}",
            medium="electricity",
            unit="kWh",
            signal="energy_kwh",
            rollover=100_000.0,
            asset=f"machining/ml1/{mid}",
            mqtt_topic=f"{enterprise}/{site}/machining/ml1/{mid}/energy_kwh",
        )
        for mid in [*cnc_ids]
    ]
    meters += [
        MeterConfig(
            id="em-ASM1",
            medium="electricity",
            unit="kWh",
            signal="energy_kwh",
            rollover=100_000.0,
            asset="assembly/al1/ASM1",
            mqtt_topic=f"{enterprise}/{site}/assembly/al1/ASM1/energy_kwh",
        ),
        MeterConfig(
            id="wm-ASM1",
            medium="water",
            unit="m3",
            signal="water_m3",
            asset="assembly/al1/ASM1",
            mqtt_topic=f"{enterprise}/{site}/assembly/al1/ASM1/water_m3",
        ),
        MeterConfig(
            id="em-compressor",
            medium="electricity",
            unit="kWh",
            signal="energy_kwh",
            asset="",
            mqtt_topic="spBv1.0/zhizao-demo/DDATA/pudong-1-utilities/compressor-1",
        ),
        MeterConfig(
            id="air-compressor",
            medium="compressed_air",
            unit="m3",
            signal="air_m3",
            asset="",
            purchased=False,
            mqtt_topic="spBv1.0/zhizao-demo/DDATA/pudong-1-utilities/compressor-1",
        ),
        MeterConfig(
            id="em-main",
            medium="electricity",
            unit="kWh",
            signal="energy_kwh",
            rollover=1_000_000.0,
            asset="",
            mqtt_topic=f"{enterprise}/{site}/utilities/main/energy_kwh",
        ),
        MeterConfig(
            id="pv-roof",
            medium="electricity",
            unit="kWh",
            signal="energy_kwh",
            asset="",
            purchased=False,  # generated on site: not purchased energy, but renewable
            renewable=True,
            mqtt_topic=f"{enterprise}/{site}/utilities/pv/energy_kwh",
        ),
        MeterConfig(
            id="gm-main",
            medium="natural_gas",
            unit="m3",
            signal="gas_m3",
            asset="",
            mqtt_topic=f"{enterprise}/{site}/utilities/main/gas_m3",
        ),
        MeterConfig(
            id="wm-main",
            medium="water",
            unit="m3",
            signal="water_m3",
            asset="",
            mqtt_topic=f"{enterprise}/{site}/utilities/main/water_m3",
        ),
    ]
    return SiteModel(
        enterprise=enterprise,
        site=site,
        name="Zhizao demonstration factory (simulated)",
        district="Pudong",
        timezone="Asia/Shanghai",
        machine_types={CNC_TYPE: _cnc_type(), ASSEMBLY_TYPE: _assembly_type()},
        calendars={"two-shift": default_calendar()},
        products=[
            ProductConfig(id="P-100", name="flange", ideal_cycle_s=120.0, unit_value_cny=1200),
            ProductConfig(id="P-200", name="bracket", ideal_cycle_s=90.0, unit_value_cny=800),
            ProductConfig(id="A-10", name="pump assembly", ideal_cycle_s=60.0, unit_value_cny=3500),
        ],
        areas=[
            AreaConfig(
                id="machining",
                name="Machining",
                lines=[
                    LineConfig(id="ml1", name="CNC line 1", calendar="two-shift", machines=machines)
                ],
            ),
            AreaConfig(
                id="assembly",
                name="Assembly",
                lines=[
                    LineConfig(
                        id="al1",
                        name="Assembly line 1",
                        calendar="two-shift",
                        machines=[
                            MachineConfig(id="ASM1", type=ASSEMBLY_TYPE, original_value_cny=400_000)
                        ],
                    )
                ],
            ),
        ],
        meters=meters,
        # what operators of the demonstration factory assign to stops (portal, API)
        reasons=[
            ReasonConfig(
                code="breakdown", label="Breakdown", label_zh="设备故障", category="breakdown"
            ),
            ReasonConfig(
                code="spindle",
                label="Spindle fault",
                label_zh="主轴故障",
                category="breakdown",
                parent="breakdown",
            ),
            ReasonConfig(
                code="tooling",
                label="Tool breakage",
                label_zh="刀具断裂",
                category="breakdown",
                parent="breakdown",
            ),
            ReasonConfig(code="changeover", label="Changeover", label_zh="换型", category="setup"),
            ReasonConfig(
                code="material", label="Waiting for material", label_zh="待料", category="material"
            ),
            ReasonConfig(
                code="quality_check", label="Quality check", label_zh="质量检验", category="quality"
            ),
        ],
    )


class SimConfig(StrictModel):
    """The simulator's configuration file (``--config sim.yaml``); every key is optional."""

    # the factory; None: the default factory (with ``machines`` CNC machines)
    site: SiteModel | None = None
    machines: int = Field(default=3, ge=1, le=1000, description="CNC machines of the default site")
    signals_per_machine: int = Field(
        default=0, ge=0, le=5000, description="extra analog signals per machine (load tests)"
    )
    behaviour: BehaviourConfig = Field(default_factory=BehaviourConfig)
    behaviour_by_machine: dict[str, BehaviourConfig] = Field(default_factory=dict)
    power_by_type: dict[str, PowerConfig] = Field(
        default_factory=lambda: {
            CNC_TYPE: PowerConfig(),
            ASSEMBLY_TYPE: PowerConfig(
                off_shift_kw=0.8,
                idle_kw=2.0,
                setup_kw=2.5,
                in_cycle_kw=6.0,
                cutting_kw=6.0,
                delay_kw=2.0,
            ),
        }
    )
    # line id -> products it makes (default: machining makes P-100/P-200, assembly A-10)
    line_products: dict[str, list[str]] = Field(
        default_factory=lambda: {"ml1": ["P-100", "P-200"], "al1": ["A-10"]}
    )
    # a period per simulated day where one machine's connection drops (NO_DATA)
    connection_drops_per_day: int = Field(default=1, ge=0, le=10)
    connection_drop_min_s: float = Field(default=600.0, gt=0)
    connection_drop_max_s: float = Field(default=1800.0, gt=0)
    # one machine's energy counter starts this close to its rollover, so a rollover happens
    rollover_headroom_kwh: float | None = Field(default=40.0, gt=0)
    # meters publish their counters every this many simulated seconds (aligned to the epoch)
    meter_period_s: float = Field(default=60.0, gt=0)
    base_load_shift_kw: float = Field(default=35.0, ge=0)
    base_load_off_kw: float = Field(default=9.0, ge=0)
    gas_shift_m3_per_h: float = Field(default=14.0, ge=0)
    gas_off_m3_per_h: float = Field(default=1.5, ge=0)
    water_base_m3_per_h: float = Field(default=0.6, ge=0)
    # rooftop solar peak (kept below the off-shift base load: the grid meter never runs back)
    solar_peak_kw: float = Field(default=6.0, ge=0)
    washer_m3_per_h: float = Field(default=1.8, ge=0)  # ASM1 parts washer, while in cycle
    compressor_loaded_kw: float = Field(default=15.0, ge=0)
    compressor_unloaded_kw: float = Field(default=4.0, ge=0)
    compressor_off_kw: float = Field(default=0.3, ge=0)
    compressor_air_m3_per_min: float = Field(default=2.2, ge=0)
    # Sparkplug B identity of the utilities edge node
    sparkplug_group: str = "zhizao-demo"
    sparkplug_edge_node: str = "pudong-1-utilities"
    sparkplug_device: str = "compressor-1"

    def build_site(self) -> SiteModel:
        return self.site if self.site is not None else default_site(self.machines)

    def behaviour_for(self, machine_id: str) -> BehaviourConfig:
        return self.behaviour_by_machine.get(machine_id, self.behaviour)


def load_sim_config(path: str | Path | None) -> SimConfig:
    """The configuration in ``path``, or the default factory for None."""
    return SimConfig() if path is None else load_model(SimConfig, path)
