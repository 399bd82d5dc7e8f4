"""The stored vocabulary: every InfluxDB measurement, tag key and KPI component field by name.

Gateway, ingest, the KPI engine, the API, the dashboards and the demo import these names instead
of repeating string literals, so a rename happens in one place and a typo is an import error.
The KPI *components* are listed here (the kernel knows no numpy dataclass);
``analytics.components.Components`` has exactly these fields, which a test checks.
"""

from __future__ import annotations

from typing import Final, Literal

__all__ = [
    "ASSET_TAGS",
    "COMPONENT_FIELDS",
    "CONNECTION_MEASUREMENT",
    "DATE_TAG",
    "KPI_MACHINE_WINDOWS",
    "KPI_PREFIX",
    "KPI_SEGMENT",
    "KPI_SITE_WINDOWS",
    "MEASUREMENT_TAG",
    "METERED_COMPONENTS",
    "METER_TAG",
    "NO_PRODUCT_COMPONENTS",
    "QUALITY_MEASUREMENT",
    "RAW_MEASUREMENTS",
    "SHIFT_TAG",
    "SITE_COMPONENT_FIELDS",
    "TARGET_COMPONENTS",
    "TIME_COMPONENTS",
    "VALUE_COMPONENTS",
    "Window",
    "kpi_machine_measurement",
    "kpi_site_measurement",
]

# -- raw measurement families (one per signal family; fields are the signal names) --------------
MACHINE_STATE: Final = "machine_state"  # state codes, product id, program, operation mode
COUNTER: Final = "counter"  # part and job counters (cumulative)
SPINDLE: Final = "spindle"  # spindle speed and load
LINE: Final = "line"  # line-level signals (PackML cell, conveyors)
ENERGY: Final = "energy"  # cumulative energy meters (kWh, m3 gas, kg steam, ...)
WATER: Final = "water"  # cumulative water meters (m3)
SPARKPLUG: Final = "sparkplug"  # Sparkplug B metrics not mapped to an asset
RAW_MEASUREMENTS: Final[tuple[str, ...]] = (
    MACHINE_STATE,
    COUNTER,
    SPINDLE,
    LINE,
    ENERGY,
    WATER,
    SPARKPLUG,
)

# -- data quality and connectivity ----------------------------------------------------------------
# per-signal markers: tags = the signal's asset tags + MEASUREMENT_TAG = the signal's measurement,
# field = signal name, value = zhizao.quality.Quality code at transitions (docs/CONTRACTS.md)
QUALITY_MEASUREMENT: Final = "data_quality"
MEASUREMENT_TAG: Final = "measurement"
# per source session: field ``connected`` (1/0), tags gateway + source
CONNECTION_MEASUREMENT: Final = "gateway_connection"
CONNECTED_FIELD: Final = "connected"
GATEWAY_TAG: Final = "gateway"
SOURCE_TAG: Final = "source"

# -- ISA-95 tag keys ------------------------------------------------------------------------------
ENTERPRISE_TAG: Final = "enterprise"
SITE_TAG: Final = "site"
AREA_TAG: Final = "area"
LINE_TAG: Final = "line"
MACHINE_TAG: Final = "machine"
ASSET_TAGS: Final[tuple[str, ...]] = (ENTERPRISE_TAG, SITE_TAG, AREA_TAG, LINE_TAG, MACHINE_TAG)
METER_TAG: Final = "meter"  # meter id on meter points
SHIFT_TAG: Final = "shift"  # kpi_machine_shift: the shift's name
DATE_TAG: Final = "date"  # kpi_machine_shift and kpi_machine_day: local date the window starts
# (YYYY-MM-DD); kpi_site_day has none: one series per site keeps cross-site sums cheap

# -- KPI components -------------------------------------------------------------------------------
KPI_PREFIX: Final = "kpi_"
Window = Literal["hour", "shift", "day"]
KPI_MACHINE_WINDOWS: Final[tuple[Window, ...]] = ("hour", "shift", "day")
# plant meters have no shift calendar; their day rows come from the day windows
KPI_SITE_WINDOWS: Final[tuple[Window, ...]] = ("hour", "day")
# the KPI engine's own rows: components per segment (the time between two window edges of the
# site), ``kpi_machine_segment`` (components) and ``kpi_site_segment`` (plant meters), stamped
# with the segment start; every hour, shift and day row is the sum of its segments' rows
KPI_SEGMENT: Final = "segment"

# times in seconds, counts in items, energy in kWh / kgce / kgCO2, value in CNY; never ratios
TIME_COMPONENTS: Final[tuple[str, ...]] = (
    "calendar_s",
    "pot_s",
    "planned_down_s",
    "pbt_s",
    "apt_s",
    "aust_s",
    "adet_s",
    "adet_minor_s",
    "adet_no_data_s",
    "adot_s",
    "in_cycle_s",
    "in_cycle_pot_s",
    "cutting_s",
    "cutting_pot_s",
    "cutting_pbt_s",
    "aoet_s",
)
COUNT_COMPONENTS: Final[tuple[str, ...]] = ("pq", "gq", "sq", "rq")
PRI_COMPONENTS: Final[tuple[str, ...]] = ("pri_pq_s", "pri_gq_s", "pri_startup_s")
ENERGY_COMPONENTS: Final[tuple[str, ...]] = ("kwh", "kgce", "kgco2")
# ideal quantity in PBT with a known product (integral of 1/PRI), and PBT with no known product:
# the target is shown only where the second is 0 (never an invented number)
TARGET_COMPONENTS: Final[tuple[str, ...]] = ("target_q", "pbt_no_product_s")
# APT, AUST and minor stops while no product is known: with pbt_no_product_s they take the time
# without an ideal cycle time out of the PRI-based KPIs' denominators (sum(PRI x GQ) has no part
# of it either), so a line's OEE is over the time that can be computed, never understated
NO_PRODUCT_COMPONENTS: Final[tuple[str, ...]] = (
    "apt_no_product_s",
    "aust_no_product_s",
    "adet_minor_no_product_s",
)
# parts counted while the machine's energy meter has data (from its first reading on): the
# denominators of energy per part, so a machine without a meter adds no parts to them
# (absent, not 0 kWh) and a line's energy per part is over its metered machines' own parts
METERED_COMPONENTS: Final[tuple[str, ...]] = ("pq_metered", "gq_metered")
# output value (CNY): good parts x the product's unit_value_cny, all of them and the metered
# ones (the denominator of energy per 10k CNY), and the good parts with a known unit value
VALUE_COMPONENTS: Final[tuple[str, ...]] = (
    "gq_valued",
    "output_value_cny",
    "output_value_metered_cny",
)
COMPONENT_FIELDS: Final[tuple[str, ...]] = (
    *TIME_COMPONENTS,
    *COUNT_COMPONENTS,
    *PRI_COMPONENTS,
    *ENERGY_COMPONENTS,
    *TARGET_COMPONENTS,
    *METERED_COMPONENTS,
    *VALUE_COMPONENTS,
    *NO_PRODUCT_COMPONENTS,
)


# the plant row (``kpi_site_*``) beside the plant meters' ``<medium>_<unit>`` quantities: the
# comprehensive energy and CO2 of the purchased media, the site's output (the output machines'
# good parts and their value: ``SiteModel.output_machines``), and where a site-level meter is
# marked renewable, the renewable energy and the site's whole use of energy (purchased plus
# produced on site), in kgce. The site KPIs of the catalog are ratios of these.
SITE_COMPONENT_FIELDS: Final[tuple[str, ...]] = (
    "water_m3",
    "electricity_kwh",
    "kgce",
    "kgco2",
    "output_gq",
    "output_value_cny",
    "renewable_kgce",
    "energy_use_kgce",
)


def kpi_machine_measurement(window: str, prefix: str = KPI_PREFIX) -> str:
    """``kpi_machine_hour``, ``kpi_machine_shift``, ``kpi_machine_day``."""
    return f"{prefix}machine_{window}"


def kpi_site_measurement(window: str, prefix: str = KPI_PREFIX) -> str:
    """``kpi_site_hour``, ``kpi_site_day``, ``kpi_site_month`` (plant meters: ``<medium>_<unit>``,
    kgce, kgco2; the month rows are sums of the day rows, with ``days``)."""
    return f"{prefix}site_{window}"
