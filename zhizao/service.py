"""How a long-running zhizao service runs: until SIGTERM or SIGINT, then a clean stop.

The gateway, ingest and the KPI engine each have a main coroutine that runs until an event is
set and then stops in its own data-flow order (flush, acknowledge, close). This module owns the
rest, once: the signal handlers that set the event, the event loop, and stopping the service's
probe server (``zhizao.probe``) after the service itself, so ``/healthz`` answers until the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Awaitable, Callable

from zhizao.probe import ProbeServer

__all__ = ["run_until_signalled"]

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def run_until_signalled(
    main: Callable[[asyncio.Event], Awaitable[None]], *, probe: ProbeServer | None = None
) -> int:
    """Run ``main(stop)`` until SIGTERM or SIGINT sets ``stop`` and ``main`` returns; then stop
    ``probe``. Returns the process's exit status (0: stopped as asked)."""

    async def runner() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in STOP_SIGNALS:
            with contextlib.suppress(NotImplementedError):  # not on every platform
                loop.add_signal_handler(sig, stop.set)
        await main(stop)

    try:
        asyncio.run(runner())
    finally:
        if probe is not None:
            probe.stop()
    return 0
