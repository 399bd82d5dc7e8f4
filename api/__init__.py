"""FastAPI service: assets, KPIs, reports, commission aggregates."""
