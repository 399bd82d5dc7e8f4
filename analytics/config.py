"""``kpi.yaml``: what the KPI engine and ``zhizao kpi compute`` read, and from where.

Signal names follow the site model (the simulator publishes them); every role can be remapped
here, so a plant with other field names needs configuration, not code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from ingest.influx import InfluxConfig
from zhizao.config import StrictModel, load_model
from zhizao.schema import (
    COUNTER,
    ENERGY,
    KPI_PREFIX,
    MACHINE_STATE,
    MEASUREMENT_TAG,
    METER_TAG,
    QUALITY_MEASUREMENT,
    SPINDLE,
    WATER,
)

__all__ = [
    "COUNTER_ROLES",
    "DataQualityConfig",
    "EnergyConfig",
    "HealthConfig",
    "KpiConfig",
    "ScheduleConfig",
    "SignalRef",
    "SignalsConfig",
    "load_kpi_config",
]

WindowKind = Literal["hour", "shift", "day"]
COUNTER_ROLES: tuple[str, ...] = (
    "parts_total",
    "parts_good",
    "parts_scrap",
    "parts_rework",
    "parts_startup_scrap",
)


class SignalRef(StrictModel):
    """Where a signal lives in InfluxDB (measurement + field); ``field`` is also the ``signal``
    column of a CSV export."""

    measurement: str
    field: str


class DataQualityConfig(StrictModel):
    """Where the gateway's data-quality markers live: one series per signal, in ``measurement``,
    tagged like the signal's asset plus ``signal_tag`` = the signal's measurement, field = the
    signal, value = ``zhizao.quality.Quality`` code at each transition (0 = good again).
    Intervals where a state signal's marker is BAD (2) or STALE (3) are NO_DATA."""

    measurement: str = QUALITY_MEASUREMENT
    signal_tag: str = MEASUREMENT_TAG


class SignalsConfig(StrictModel):
    """Role -> signal. ``None`` switches a role off."""

    # state signals; empty = the machine type's signals of kind "state" in the site model
    state: list[SignalRef] = Field(default_factory=list)
    product: SignalRef | None = SignalRef(measurement=MACHINE_STATE, field="product_id")
    parts_total: SignalRef | None = SignalRef(measurement=COUNTER, field="part_count")
    parts_good: SignalRef | None = SignalRef(measurement=COUNTER, field="good_part_count")
    parts_scrap: SignalRef | None = SignalRef(measurement=COUNTER, field="scrap_part_count")
    parts_rework: SignalRef | None = SignalRef(measurement=COUNTER, field="rework_part_count")
    parts_startup_scrap: SignalRef | None = None
    spindle_load_pct: SignalRef | None = SignalRef(measurement=SPINDLE, field="spindle_load_pct")
    spindle_speed_rpm: SignalRef | None = SignalRef(measurement=SPINDLE, field="spindle_speed_rpm")
    cutting: SignalRef | None = None  # a boolean "cutting" signal, if the source publishes one
    # measurement of meter counters (the field is the meter's ``signal`` in the site model),
    # per medium where it differs from ``meter_measurement``
    meter_measurement: str = ENERGY
    meter_measurements: dict[str, str] = Field(default_factory=lambda: {"water": WATER})
    # tag naming the meter id on meter points ("" = find meters by their asset tags only)
    meter_tag: str = METER_TAG
    # per-signal data-quality markers written by the gateway; None = not read
    data_quality: DataQualityConfig | None = DataQualityConfig()

    def measurement_of_meter(self, medium: str) -> str:
        return self.meter_measurements.get(medium, self.meter_measurement)


class EnergyConfig(StrictModel):
    coefficients: Path | None = None  # None = the packaged analytics/coefficients.yaml
    conversion: str = "GBT2589-calorific"
    emission_factors: list[str] = Field(
        default_factory=lambda: ["CN-SH-grid-2023", "natural-gas-default", "diesel-default"]
    )
    # meters measuring the plant intake (a main meter includes its sub-meters); empty = the one
    # purchased site-level meter per medium (several of one medium are refused)
    plant_meters: list[str] = Field(default_factory=list)


class ScheduleConfig(StrictModel):
    interval_s: float = Field(default=300.0, gt=0, description="how often the engine runs")
    # recent windows recomputed on every run, so late or replayed data is folded in
    lookback_s: float = Field(default=7200.0, ge=0)
    # first run: compute this far back
    backfill_s: float = Field(default=86400.0, ge=0)
    # wait this long after a window ends before its first computation
    delay_s: float = Field(default=60.0, ge=0)


class HealthConfig(StrictModel):
    """The engine's ``/healthz`` and ``/metrics`` endpoint (``zhizao kpi run``)."""

    host: str = "127.0.0.1"
    # gateway 9131, ingest 9132, API 9130: the KPI engine is 9133; 0 = no HTTP endpoint
    port: int = Field(default=9133, ge=0, le=65535)
    # /healthz answers 503 once this many runs in a row have failed
    fail_after_runs: int = Field(default=3, ge=1)


class KpiConfig(StrictModel):
    """The KPI engine's configuration file."""

    sites: list[Path] = Field(
        min_length=1, description="site model files (one engine may serve several)"
    )
    influx: InfluxConfig | None = None
    windows: list[WindowKind] = Field(default=["hour", "shift", "day"], min_length=1)
    schedule: ScheduleConfig = ScheduleConfig()
    health: HealthConfig = HealthConfig()
    signals: SignalsConfig = SignalsConfig()
    energy: EnergyConfig = EnergyConfig()
    # a machine state is trusted this long after the machine's last sample of any signal; then
    # NO_DATA. On-change sources (OPC UA subscriptions) can be quiet for a whole setup, so the
    # default is an hour; lower it when the gateway republishes values periodically.
    heartbeat_s: float = Field(default=3600.0, gt=0)
    micro_stop_s: float = Field(
        default=120.0, gt=0, description="minor stop vs breakdown (Nakajima)"
    )
    effectiveness_flag_above: float = Field(default=1.05, gt=0)
    # a machine IN_CYCLE this long without a single part counted gets a note (a counter that
    # never moves: wrong tag map, wrong signal name, a dead counter); above the longest cycle
    no_parts_in_cycle_s: float = Field(default=7200.0, gt=0)
    # product when a machine publishes none: machine id -> product id, "*" for all machines
    default_product: dict[str, str] = Field(default_factory=dict)
    measurement_prefix: str = Field(default=KPI_PREFIX, pattern=r"^[a-z][a-z0-9_]*$")

    def resolve(self, base: Path) -> KpiConfig:
        """Relative paths are relative to the config file."""
        sites = [p if p.is_absolute() else base / p for p in self.sites]
        energy = self.energy
        if energy.coefficients is not None and not energy.coefficients.is_absolute():
            energy = energy.model_copy(update={"coefficients": base / energy.coefficients})
        return self.model_copy(update={"sites": sites, "energy": energy})


def load_kpi_config(path: str | Path) -> KpiConfig:
    p = Path(path)
    return load_model(KpiConfig, p).resolve(p.parent)
