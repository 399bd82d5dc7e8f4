"""Analytics: pure numpy KPI functions and the KPI engine."""
