"""The data notes of a KPI computation: one catalog of kinds and their texts, shared by the
whole-range computation (``SiteComputer.compute``, ``kpi compute``) and the engine's segment
path, so both say the same thing in the same words.

A note's text stays the same from run to run (the engine logs each text once); numbers that
change (seconds, counts per window) belong in rows and metrics, not in the text. The ``kind``
labels the engine's ``zhizao_kpi_data_notes{site,kind}`` gauge.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["NOTE_KINDS", "DataNote", "Notes"]

# kind -> what it means (the README and the metric's help list these)
NOTE_KINDS: dict[str, str] = {
    "unknown_state": "a state code no state map knows was in force",
    "unknown_product": "a product id without an ideal cycle time on the machine",
    "no_product": "no product id and no default product: no PRI-based KPI",
    "no_state_data": "a machine without state data (its time is NO_DATA)",
    "no_parts_in_cycle": "IN_CYCLE longer than no_parts_in_cycle_s without a part counted",
    "no_meter": "a machine without an energy meter, or one without data",
    "no_plant_meter_data": "a plant meter without data",
    "count_check": "good parts above produced parts, or negative part counts",
    "missing_segment": "a window left unwritten because a segment is missing",
    "skipped_rows": "rows of an export that could not be used",
}


@dataclass(frozen=True, slots=True)
class DataNote:
    kind: str
    text: str

    def __post_init__(self) -> None:
        if self.kind not in NOTE_KINDS:
            raise ValueError(f"unknown note kind {self.kind!r}; expected one of {list(NOTE_KINDS)}")

    def __str__(self) -> str:
        return self.text


class Notes:
    """One constructor per note the computations make (its kind and its text together)."""

    @staticmethod
    def unknown_state(machine: str, codes: list[str]) -> DataNote:
        return DataNote(
            "unknown_state",
            f"{machine}: unknown state codes {codes} (NO_DATA where no other state signal "
            "maps): add them to the machine type's state_map",
        )

    @staticmethod
    def unknown_product(machine: str, products: list[str]) -> DataNote:
        return DataNote("unknown_product", f"{machine}: products without PRI {products}")

    @staticmethod
    def no_product(machine: str) -> DataNote:
        return DataNote(
            "no_product",
            f"{machine}: no product id and no default product, so no ideal cycle time: its "
            "OEE, effectiveness and target are not computed and its line's are over the other "
            "machines (publish product_id or set default_product in kpi.yaml)",
        )

    @staticmethod
    def no_state_data(machine: str) -> DataNote:
        return DataNote(
            "no_state_data", f"{machine}: no state data in the range (counted as NO_DATA)"
        )

    @staticmethod
    def no_parts_in_cycle(machine: str, hours: float, day: str, roles: list[str]) -> DataNote:
        return DataNote(
            "no_parts_in_cycle",
            f"{machine}: IN_CYCLE for more than {hours:g} h without a part counted on {day}: "
            f"check its part counters (read: {', '.join(roles)}) and their tag map",
        )

    @staticmethod
    def meter_without_data(machine: str, meter: str) -> DataNote:
        return DataNote(
            "no_meter",
            f"{machine}: energy meter {meter} has no data in the range: its energy per part is "
            "null, not 0",
        )

    @staticmethod
    def unmetered(machines: list[str]) -> DataNote:
        return DataNote(
            "no_meter",
            f"machines without an energy meter {machines}: their energy per part is null, not "
            "0, and their lines' are over the metered machines",
        )

    @staticmethod
    def plant_meter_without_data(meter: str) -> DataNote:
        return DataNote("no_plant_meter_data", f"plant meter {meter}: no data in the range")

    @staticmethod
    def count_check(text: str) -> DataNote:
        return DataNote("count_check", text)

    @staticmethod
    def missing_segment(text: str) -> DataNote:
        return DataNote("missing_segment", text)
