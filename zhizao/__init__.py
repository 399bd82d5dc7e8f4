"""zhizao shared kernel: the neutral vocabulary every component speaks.

Nothing in this package talks to a network or imports a protocol library; the gateway, ingest,
analytics, API and simulator all build on it.
"""

__version__ = "0.1.0"
