"""Client-side helpers for tests and benchmarks that read the simulator over OPC UA.

``BulkSubscription`` hands the whole notification list of each publish response to one callback
(asyncua's handler API would schedule one task per value, which starves the loop at tens of
thousands of values per second). ``ValueRecorder`` keeps every (source time, value, status) per
node, which is what a KPI reconstruction needs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from asyncua import ua as _ua
from asyncua.common.node import Node
from asyncua.common.subscription import Subscription

from simulator.config import NS_CNC, NS_MACHINERY, NS_PACKML, NS_SIM
from simulator.signals import NS_UA, VarSpec

__all__ = [
    "BAD_VALUE",
    "BulkSubscription",
    "ValueRecorder",
    "browse_machine_variable",
    "create_bulk_subscription",
]

ua: Any = _ua
BAD_VALUE = object()  # recorded value of a sample with a bad status
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

OnValues = Callable[[list[tuple[int, Any]]], None]


class _NoHandler:
    """A handler so the base class runs in callback mode; ``publish_callback`` bypasses it."""


class BulkSubscription(Subscription):
    """A subscription that delivers each publish response as one list of (client handle, DataValue)."""

    def __init__(self, session: Any, params: Any, on_values: OnValues) -> None:
        super().__init__(session, params, _NoHandler())  # type: ignore[arg-type]
        self.on_values = on_values
        self.status_changes: list[Any] = []

    async def publish_callback(self, publish_result: Any) -> None:
        data = publish_result.NotificationMessage.NotificationData
        if not data:
            return
        items: list[tuple[int, Any]] = []
        for notif in data:
            if isinstance(notif, ua.DataChangeNotification):
                items.extend((it.ClientHandle, it.Value) for it in notif.MonitoredItems)
            elif isinstance(notif, ua.StatusChangeNotification):
                self.status_changes.append(notif.Status)
        if items:
            self.on_values(items)

    def node_of_handle(self) -> dict[int, Node]:
        """Client handle -> node, for the monitored items created so far."""
        return {h: d.node for h, d in self._monitored_items.items() if d.node is not None}


async def create_bulk_subscription(
    client: Any, on_values: OnValues, period_ms: float = 50.0
) -> BulkSubscription:
    params = ua.CreateSubscriptionParameters()
    params.RequestedPublishingInterval = period_ms
    params.RequestedLifetimeCount = 10000
    params.RequestedMaxKeepAliveCount = client.get_keepalive_count(period_ms)
    params.MaxNotificationsPerPublish = 0  # no limit
    params.PublishingEnabled = True
    params.Priority = 0
    sub = BulkSubscription(client.uaclient.session, params, on_values)
    await sub.init()
    return sub


def _ts_ns(dt: datetime | None) -> int:
    if dt is None:
        return 0
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    delta = dt - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000


@dataclass
class ValueRecorder:
    """Every notification: (source ts_ns, value or BAD_VALUE) per client handle, and per key
    once the handles are registered (notifications may arrive before that)."""

    key_of_handle: dict[int, str] = field(default_factory=dict)
    by_handle: dict[int, list[tuple[int, Any]]] = field(default_factory=dict)
    count: int = 0

    def __call__(self, items: list[tuple[int, Any]]) -> None:
        self.count += len(items)
        for handle, dv in items:
            bad = dv.StatusCode is not None and dv.StatusCode.is_bad()
            value: Any = BAD_VALUE if bad else dv.Value.Value
            if isinstance(value, ua.LocalizedText):
                value = value.Text
            self.by_handle.setdefault(handle, []).append((_ts_ns(dv.SourceTimestamp), value))

    @property
    def samples(self) -> dict[str, list[tuple[int, Any]]]:
        return {
            self.key_of_handle[h]: v for h, v in self.by_handle.items() if h in self.key_of_handle
        }


async def browse_machine_variable(client: Any, machine_id: str, spec: VarSpec) -> Node:
    """The node of ``spec`` under Objects/Machinery:Machines/<machine>, found by browse path."""
    ns_index: dict[str, int] = {NS_UA: 0}
    for uri in (NS_MACHINERY, NS_SIM, NS_CNC, NS_PACKML):
        ns_index[uri] = await client.get_namespace_index(uri)
    path = [
        f"{ns_index[NS_MACHINERY]}:Machines",
        f"{ns_index[NS_SIM]}:{machine_id}",
        *(f"{ns_index[uri]}:{name}" for uri, name in spec.path),
    ]
    node: Node = await client.nodes.objects.get_child(path)
    return node


async def subscribe_keys(
    sub: BulkSubscription, recorder: ValueRecorder, nodes: Iterable[tuple[str, Node]]
) -> None:
    """Subscribe ``nodes`` (key, node) with an unbounded queue and register their keys."""
    pairs = list(nodes)
    sub_any: Any = sub  # asyncua types sampling_interval as its Double alias
    await sub_any.subscribe_data_change([n for _, n in pairs], queuesize=0, sampling_interval=0.0)
    by_node = {n.nodeid: key for key, n in pairs}
    for handle, node in sub.node_of_handle().items():
        if node.nodeid in by_node:
            recorder.key_of_handle[handle] = by_node[node.nodeid]
