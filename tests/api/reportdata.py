"""Report figures for the report tests: a consistent annual report and twelve months of it."""

from __future__ import annotations

from typing import Any

from tests.api import worked_example as wx
from zhizao.site import SiteModel

# VA = GOV - II + VAT exactly: 12000 - 9500 + 500 = 3000
ANNUAL: dict[str, Any] = {
    "value_added_current_10k_cny": 3000.0,
    "price_index": 1.05,
    "gross_output_value_10k_cny": 12000.0,
    "intermediate_input_10k_cny": 9500.0,
    "vat_payable_10k_cny": 500.0,
    "main_business_revenue_10k_cny": 11800.0,
    "rd_spend_10k_cny": 360.0,
    "valid_invention_patents": 14,
    "average_headcount": 420,
    "industrial_land_km2": 0.12,
    "park": "Zhangjiang",
    "waste_generated_t": 1200.0,
    "waste_utilized_t": 1140.0,
    "waste_prior_stock_utilized_t": 36.0,
    "electricity_kwh": 12_000_000.0,
}


def month(m: int, scale: float = 1.0) -> dict[str, Any]:
    """A twelfth of the annual flows (times ``scale``), with the headcount and price index."""
    return {
        "value_added_current_10k_cny": 250.0 * scale,
        "price_index": 1.05,
        "gross_output_value_10k_cny": 1000.0 * scale,
        "intermediate_input_10k_cny": 791.5 * scale,  # 12 x = 9498, within 0.5 % of 9500
        "vat_payable_10k_cny": 41.5 * scale,  # 12 x = 498, within 0.5 % of 500
        "waste_generated_t": 100.0 * scale,
        "electricity_kwh": 1_000_000.0 * scale,
        "average_headcount": 420,
    }


def site(key: str = wx.SITE) -> SiteModel:
    return SiteModel.model_validate({**wx.SITE_MODEL, "site": key})
