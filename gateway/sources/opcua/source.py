"""OPC UA source (asyncua): subscriptions in bulk, polling fallback, self-healing, secure by default.

* Monitored items use a ``DataChangeFilter`` with trigger ``StatusValueTimestamp`` (a new source
  timestamp is a new sample even when the value repeats) and a server-side queue, and are created
  in calls no larger than the server's ``OperationLimits/MaxMonitoredItemsPerCall``.
* Notifications are handled in bulk: ``_BulkSubscription`` receives each whole
  ``DataChangeNotification`` list and appends its items to flat lists (one tight loop, no task or
  callback per value); a flush every ``flush_interval_s`` turns them into one ``Batch`` with numpy.
  Source timestamp, server timestamp and status code are kept per sample.
* Self-healing: a watchdog reads ``ServerStatus/CurrentTime`` and checks that publish responses
  (data or keep-alive) keep arriving; any failure tears the session down, records the gap in the
  ``gateway_connection`` series, and reconnects with bounded backoff, re-creating everything.
  A node the server refuses (``BadNodeIdUnknown``) is counted and skipped; the others go on.
* Security: ``Basic256Sha256`` / ``SignAndEncrypt`` by default, a persistent client certificate
  created on first run, the server certificate trusted by trust directory or pinned SHA-256.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import logging
import math
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np
from asyncua import ua
from asyncua.client.client import Client
from asyncua.common.subscription import Subscription
from asyncua.crypto import security_policies
from asyncua.ua.attribute_ids import AttributeIds
from asyncua.ua.object_ids import ObjectIds
from asyncua.ua.status_codes import StatusCodes
from asyncua.ua.uaerrors import UaStatusCodeError
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from numpy.typing import NDArray

from gateway.configbase import field_type, resolve_asset
from gateway.sources.base import QUALITY_MEASUREMENT, Backoff, SampleSink, SourceStats
from gateway.sources.opcua.config import OpcUaSourceConfig, OpcUaTagConfig
from gateway.sources.runtime import (
    QualityMarkers,
    SourceRuntime,
    TaskFailed,
    Work,
    is_connection_loss,
)
from zhizao.errors import ConfigError, SourceUnavailable
from zhizao.model import Batch, FieldType, SeriesKey
from zhizao.quality import Quality, quality_from_opcua_status
from zhizao.retry import Episode

__all__ = ["OpcUaSource", "server_certificate_fingerprint"]

log = logging.getLogger(__name__)

_POLICIES: dict[str, type[security_policies.SecurityPolicy]] = {
    "Basic256Sha256": security_policies.SecurityPolicyBasic256Sha256,
    "Aes128_Sha256_RsaOaep": security_policies.SecurityPolicyAes128Sha256RsaOaep,
    "Aes256_Sha256_RsaPss": security_policies.SecurityPolicyAes256Sha256RsaPss,
}
_MODES = {
    "SignAndEncrypt": ua.MessageSecurityMode.SignAndEncrypt,
    "Sign": ua.MessageSecurityMode.Sign,
}
_NO_SOURCE_TS = -1.0


def _first_cert(der: bytes) -> bytes:
    """The leading certificate of a DER chain (servers may send cert + chain)."""
    if len(der) > 4 and der[0] == 0x30 and der[1] == 0x82:
        return der[: int.from_bytes(der[2:4], "big") + 4]
    return der


def server_certificate_fingerprint(der: bytes) -> str:
    """Upper-case hex SHA-256 of a DER certificate, ``AA:BB:...`` (as integrators pin it)."""
    digest = hashlib.sha256(_first_cert(der)).hexdigest().upper()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


def check_private_key(path: Path) -> None:
    """Refuse a client private key that others can read (``ConfigError``); a missing one is
    left to be created. The certificate directory is made 0700."""
    if path.parent.exists():
        mode = path.parent.stat().st_mode & 0o777
        if mode & 0o077:
            log.warning("%s had mode %o; made it 0700", path.parent, mode)
            os.chmod(path.parent, 0o700)
    if not path.exists():
        return
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise ConfigError(
            f"the OPC UA client private key {path} is readable by others (mode {mode:o}); "
            f"make it 0600 (chmod 600 {path}) or delete it to have a new one created",
            key="security.cert_dir",
            expected="a private key file with mode 0600",
        )


def _protect_new_key(path: Path) -> None:
    if path.exists() and path.stat().st_mode & 0o077:
        os.chmod(path, 0o600)


def _norm_fp(text: str) -> str:
    return text.replace(":", "").replace(" ", "").upper()


def _trusted_fingerprints(trust_dir: Path) -> set[str]:
    out: set[str] = set()
    if not trust_dir.is_dir():
        return out
    for path in sorted(trust_dir.iterdir()):
        if not path.is_file():
            continue
        data = path.read_bytes()
        try:
            cert = (
                x509.load_pem_x509_certificate(data)
                if b"-----BEGIN" in data
                else x509.load_der_x509_certificate(data)
            )
        except ValueError:
            log.warning("trust_dir: %s is not a certificate, ignored", path)
            continue
        out.add(_norm_fp(server_certificate_fingerprint(cert.public_bytes(Encoding.DER))))
    return out


def _text(value: Any) -> str:
    """String samples: LocalizedText (40001 CurrentState) carries its text in ``.Text``."""
    if isinstance(value, str):
        return value
    if isinstance(value, ua.LocalizedText):
        return value.Text or ""
    if isinstance(value, ua.QualifiedName):
        return value.Name or ""
    return str(value)


_SESSION_GONE = frozenset(
    {
        StatusCodes.BadSessionClosed,
        StatusCodes.BadSessionIdInvalid,
        StatusCodes.BadSessionNotActivated,
        StatusCodes.BadConnectionClosed,
        StatusCodes.BadSecureChannelClosed,
        StatusCodes.BadSecureChannelIdInvalid,
        StatusCodes.BadServerNotConnected,
        StatusCodes.BadCommunicationError,
        StatusCodes.BadTimeout,
        StatusCodes.BadShutdown,
    }
)


def _connection_lost(exc: BaseException) -> bool:
    """The server or the session went away (an outage), as opposed to a task's own failure
    (a refused request such as BadTooManyOperations, a full outbox file system, a bug)."""
    if isinstance(exc, UaStatusCodeError):
        return exc.code in _SESSION_GONE
    return is_connection_loss(exc)


class _Slots:
    """Tag slots: slot i <-> client handle i + 1 <-> series index <-> dtype."""

    def __init__(
        self, sink: SampleSink, tags: Sequence[OpcUaTagConfig], enterprise: str, site: str
    ) -> None:
        self.tags = list(tags)
        series = []
        quality_series = []
        dtypes = []
        for tag in tags:
            asset = resolve_asset(tag.asset, enterprise, site)
            dtype = field_type(tag.type)
            series.append(
                sink.series_index(SeriesKey.make(tag.measurement, asset.tags(), tag.signal, dtype))
            )
            # data-quality marker of the signal (docs/CONTRACTS.md "Data-quality markers")
            qtags = {**asset.tags(), "measurement": tag.measurement}
            quality_series.append(
                sink.series_index(
                    SeriesKey.make(QUALITY_MEASUREMENT, qtags, tag.signal, FieldType.INT)
                )
            )
            dtypes.append(int(dtype))
        self.series = np.array(series, np.int32)
        self.quality_series = np.array(quality_series, np.int32)
        self.dtypes = np.array(dtypes, np.uint8)


class _Collector:
    """Flat lists of decoded notifications; ``drain`` makes them columnar."""

    def __init__(self, slots: _Slots, stats: SourceStats, markers: QualityMarkers) -> None:
        self.slots = slots
        self.stats = stats
        self.markers = markers
        self._slot: list[int] = []
        self._value: list[Any] = []
        self._src: list[float] = []
        self._srv: list[float] = []
        self._status: list[int] = []

    def __len__(self) -> int:
        return len(self._slot)

    def add_items(self, items: Sequence[ua.MonitoredItemNotification]) -> None:
        """The bulk path: one loop over a whole notification list."""
        slot, value, src, srv, status = self._slot, self._value, self._src, self._srv, self._status
        for item in items:
            dv = item.Value
            slot.append(item.ClientHandle - 1)
            v = dv.Value
            value.append(None if v is None else v.Value)
            s = dv.SourceTimestamp
            src.append(_NO_SOURCE_TS if s is None else s.timestamp())
            s = dv.ServerTimestamp
            srv.append(_NO_SOURCE_TS if s is None else s.timestamp())
            sc = dv.StatusCode
            status.append(0 if sc is None else sc.value)

    def add_values(self, slots: Sequence[int], values: Sequence[ua.DataValue]) -> None:
        for slot, dv in zip(slots, values, strict=True):
            self._slot.append(slot)
            self._value.append(None if dv.Value is None else dv.Value.Value)
            s = dv.SourceTimestamp
            self._src.append(_NO_SOURCE_TS if s is None else s.timestamp())
            s = dv.ServerTimestamp
            self._srv.append(_NO_SOURCE_TS if s is None else s.timestamp())
            self._status.append(0 if dv.StatusCode is None else dv.StatusCode.value)

    def drain(
        self,
    ) -> tuple[Batch, NDArray[np.int64], NDArray[np.uint32]] | None:
        if not self._slot:
            return None
        slots = np.array(self._slot, np.int64)
        raw_values = self._value
        src = np.array(self._src, np.float64)
        srv = np.array(self._srv, np.float64)
        status = np.array(self._status, np.uint32)
        self._slot, self._value, self._src, self._srv, self._status = [], [], [], [], []
        now_s = time.time()
        srv = np.where(srv < 0, now_s, srv)
        src = np.where(src < 0, srv, src)  # no source timestamp: the server's is the best we have
        # datetimes carry microseconds: round to them, then scale (no float error in ns)
        ts_ns = np.round(src * 1e6).astype(np.int64) * 1000
        srv_ns = np.round(srv * 1e6).astype(np.int64) * 1000
        n = len(slots)
        dtypes = self.slots.dtypes[slots]
        values = np.empty(n, dtype=object)
        values[:] = raw_values
        keep = np.ones(n, dtype=bool)
        no_value = np.asarray(values == None, dtype=bool)  # noqa: E711 - elementwise
        quality = quality_from_opcua_status(status)
        # a bad status without a value (connection to the machine lost) is no sample, but it is
        # an outage: the marker makes it visible to the KPIs as NO_DATA
        mark = np.where(no_value, np.maximum(quality, np.uint8(Quality.BAD)), quality)
        markers = self.markers.transitions(slots, ts_ns, srv_ns, mark.astype(np.uint8))
        if no_value.any():
            self.stats.reject("no_value", int(no_value.sum()))
            keep &= ~no_value
        f64 = np.zeros(n, np.float64)
        i64 = np.zeros(n, np.int64)
        strs: NDArray[np.object_] | None = None
        for dtype in np.unique(dtypes).tolist():
            mask = (dtypes == dtype) & keep
            if not mask.any():
                continue
            ok = self._convert(FieldType(dtype), values, mask, f64, i64)
            if dtype == FieldType.STRING:
                strs = np.full(n, None, dtype=object)
                strs[mask] = [_text(v) for v in values[mask]]
            keep &= ok
        batch = Batch(
            series=self.slots.series[slots],
            ts_ns=ts_ns,
            value_f64=f64,
            value_i64=i64,
            quality=quality,
            value_str=strs,
        )
        if not keep.all():
            batch = batch.take(keep)
            srv_ns, status = srv_ns[keep], status[keep]
        if len(markers):
            batch = Batch.concat([batch, markers])
            srv_ns = np.concatenate((srv_ns, markers.ts_ns))
            status = np.concatenate((status, np.zeros(len(markers), np.uint32)))
        return batch, srv_ns, status

    def _convert(
        self,
        dtype: FieldType,
        values: NDArray[np.object_],
        mask: NDArray[np.bool_],
        f64: NDArray[np.float64],
        i64: NDArray[np.int64],
    ) -> NDArray[np.bool_]:
        """Fill the typed column for ``mask``; returns a mask of samples that converted."""
        ok = np.ones(len(values), dtype=bool)
        if dtype == FieldType.STRING:
            return ok
        picked = values[mask]
        try:
            if dtype == FieldType.FLOAT:
                f64[mask] = np.asarray(picked, dtype=np.float64)
            else:
                i64[mask] = np.asarray(picked, dtype=np.int64)
            return ok
        except (TypeError, ValueError, OverflowError):
            pass
        # slow path, only for a batch that holds a value of the wrong type
        idx = np.flatnonzero(mask)
        for i in idx.tolist():
            v = values[i]
            try:
                if isinstance(v, str | bytes | list | dict):
                    raise TypeError
                if dtype == FieldType.FLOAT:
                    f64[i] = float(v)
                else:
                    i64[i] = int(v)
            except (TypeError, ValueError, OverflowError):
                ok[i] = False
        bad = int((~ok).sum())
        if bad:
            self.stats.reject("wrong_type", bad)
        return ok


class _BulkSubscription(Subscription):
    """Subscription whose publish callback hands whole notification lists to the collector."""

    def __init__(
        self, session: Any, params: ua.CreateSubscriptionParameters, collector: _Collector
    ):
        super().__init__(session, params, handler=cast(Any, _NoHandler()))
        self._collector = collector

    async def publish_callback(self, publish_result: ua.PublishResult) -> None:
        self.last_publish_at = time.monotonic()
        data = publish_result.NotificationMessage.NotificationData
        if not data:
            return  # keep-alive
        self.last_sequence_number = int(publish_result.NotificationMessage.SequenceNumber)
        for notification in data:
            if isinstance(notification, ua.DataChangeNotification):
                self._collector.add_items(notification.MonitoredItems)
            elif isinstance(notification, ua.StatusChangeNotification):
                log.warning("subscription status change: %s", notification.Status)


class _NoHandler:
    """Placeholder so asyncua uses callback mode; the bulk callback above does the work."""


class OpcUaSource:
    """One OPC UA server. ``run`` never returns (until cancelled) and never raises."""

    def __init__(
        self,
        config: OpcUaSourceConfig,
        sink: SampleSink,
        *,
        enterprise: str,
        site: str,
        gateway_id: str,
        state_dir: Path,
    ) -> None:
        self.config = config
        self.name = config.name
        self.sink = sink
        self.state_dir = state_dir
        self.stats = SourceStats(config.name, "opcua")
        self._slots = _Slots(sink, config.tags, enterprise, site)
        # the time of the last all-bad markers survives a restart (see QualityMarkers)
        markers = QualityMarkers(self._slots.quality_series, state_dir / f"{config.name}.bad-since")
        self._collector = _Collector(self._slots, self.stats, markers)
        self.runtime = SourceRuntime(
            self.stats,
            sink,
            log,
            enterprise=enterprise,
            site=site,
            gateway_id=gateway_id,
            connection_lost=_connection_lost,
            markers=markers,
        )
        self._backoff = Backoff(config.reconnect_min_s, config.reconnect_max_s)
        self.items_per_call_used = 0  # what the last session batched CreateMonitoredItems by
        self.nodes_per_read_used = 0  # what the last session's polled reads were cut to
        self.monitored_items = 0
        self.bad_nodes: dict[str, str] = {}
        self._outage = Episode()  # the server unreachable: logged once, its end once
        self.sessions = 0

    # ------------------------------------------------------------------ life cycle

    async def run(self) -> None:
        while True:
            try:
                await self._session()
            except asyncio.CancelledError:
                raise
            except ConfigError as exc:
                # a wrong setting (a security policy the server does not offer) stays wrong:
                # end the source with the error instead of retrying it forever
                self.stats.last_error = f"configuration error: {exc}"
                log.error("OPC UA source %s stopped: %s", self.name, exc)
                raise
            except TaskFailed as exc:
                self.stats.last_error = str(exc)  # logged once and counted by the runtime
            except Exception as exc:
                self.stats.last_error = f"{type(exc).__name__}: {exc}"
                if self._outage.failed(self.stats.last_error):
                    log.warning(
                        "OPC UA source %s: %s is unreachable or failed; retrying with backoff "
                        "up to %ss (%s)",
                        self.name,
                        self.config.endpoint,
                        self.config.reconnect_max_s,
                        self.stats.last_error,
                    )
            finally:
                # what the session received is stored before anything else happens
                await self.runtime.guarded("flush", self._flush)
                if self.stats.connected:
                    self.stats.connected = False
                    # each marker on its own: one that fails must not cost the other
                    await self.runtime.guarded(
                        "markers", functools.partial(self._emit_connection, False)
                    )
                    await self.runtime.guarded("markers", self._emit_session_lost)
            delay = self._backoff.next_delay_s()
            await asyncio.sleep(delay)

    async def _emit_connection(self, connected: bool) -> None:
        await self.runtime.connection(connected)

    async def _emit_session_lost(self) -> None:
        """Every signal of the source is bad from now on, until it delivers a good value again
        (the KPI engine reads per-signal markers, not the source-level connection series)."""
        markers = self._collector.markers.all_bad(time.time_ns())
        if len(markers):
            await self.runtime.emit(
                markers,
                server_ts_ns=markers.ts_ns,
                status_code=np.zeros(len(markers), np.uint32),
            )

    async def _session(self) -> None:
        cfg = self.config
        client = Client(cfg.endpoint, timeout=cfg.request_timeout_s)
        client.session_timeout = int(cfg.session_timeout_s * 1000)
        client.application_uri = cfg.security.application_uri
        client.name = f"zhizao gateway {self.name}"
        try:
            await self._configure_security(client)
            await client.connect()
        except BaseException:
            self.stats.connect_failures += 1
            raise
        try:
            sub = await self._subscribe(client)
            tasks: list[tuple[str, Work]] = [
                ("flush", self._flush_loop),
                ("watchdog", functools.partial(self._watchdog, client, sub)),
            ]
            tasks.extend(await self._polling(client))
            if self._outage.recovered():
                log.warning("OPC UA source %s: connected again to %s", self.name, cfg.endpoint)
            self.stats.connected = True
            self.sessions += 1
            self.stats.reconnects = self.sessions - 1
            self._backoff.reset()
            # every task is a child of one TaskGroup: the first that fails ends the session
            await self.runtime.supervise(
                tasks,
                on_start=[("markers", functools.partial(self._emit_connection, True))],
                recovered_after_s=max(cfg.watchdog_interval_s, 3 * cfg.flush_interval_s),
            )
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.disconnect(), timeout=2.0)

    async def _configure_security(self, client: Client) -> None:
        sec = self.config.security
        if sec.username is not None and sec.password is not None:
            client.set_user(sec.username)
            client.set_password(sec.password.get_secret_value())
        if sec.policy == "None":
            return
        cert_dir = sec.cert_dir if sec.cert_dir.is_absolute() else self.state_dir / sec.cert_dir
        cert_file, key_file = cert_dir / "client_cert.der", cert_dir / "client_key.pem"
        check_private_key(key_file)
        cert_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(cert_dir, 0o700)
        # created once, then reused: the server's trust list keeps recognising this gateway
        old_umask = os.umask(0o077)  # the key file is created 0600 from the start
        try:
            await client.setup_self_signed_certificate(
                key_file, cert_file, subject_attrs={"organizationName": "zhizao"}
            )
        finally:
            os.umask(old_umask)
        _protect_new_key(key_file)
        endpoints = await client.connect_and_get_server_endpoints()
        policy = _POLICIES[sec.policy]
        mode = _MODES[sec.mode]
        match = [
            e for e in endpoints if e.SecurityPolicyUri == policy.URI and e.SecurityMode == mode
        ]
        if not match:
            offered = sorted(
                {
                    f"{e.SecurityPolicyUri.rsplit('#', 1)[-1]}/{e.SecurityMode.name}"
                    for e in endpoints
                }
            )
            raise ConfigError(
                f"OPC UA server {self.config.endpoint} does not offer {sec.policy}/{sec.mode}",
                key=f"sources.{self.name}.security",
                expected=f"one of the offered endpoints: {', '.join(offered)}",
            )
        server_der = _first_cert(bytes(match[0].ServerCertificate))
        fp = server_certificate_fingerprint(server_der)
        trusted = False
        if sec.server_fingerprint_sha256:
            trusted = _norm_fp(sec.server_fingerprint_sha256) == _norm_fp(fp)
        if not trusted and sec.trust_dir is not None:
            trusted = _norm_fp(fp) in _trusted_fingerprints(sec.trust_dir)
        if not trusted:
            raise SourceUnavailable(
                f"OPC UA server certificate of {self.config.endpoint} is not trusted",
                detail=f"SHA-256 {fp}; copy the certificate into trust_dir or pin the fingerprint",
            )
        await client.set_security(policy, str(cert_file), str(key_file), None, server_der, mode)

    async def _operation_limit(self, client: Client, object_id: int, default: int) -> int:
        """A value of Server/ServerCapabilities/OperationLimits; 0 means "no limit" (1000 then)
        and a server without the node gets ``default`` (conservative, like S7-1200 profiles)."""
        try:
            limit = int(await client.get_node(f"i={object_id}").read_value() or 0)
        except Exception:
            return default
        return limit if limit > 0 else 1000

    async def _items_per_call(self, client: Client) -> int:
        if self.config.max_items_per_call:
            return self.config.max_items_per_call
        return await self._operation_limit(
            client,
            ObjectIds.Server_ServerCapabilities_OperationLimits_MaxMonitoredItemsPerCall,
            100,
        )

    async def _nodes_per_read(self, client: Client) -> int:
        if self.config.max_nodes_per_read:
            return self.config.max_nodes_per_read
        return await self._operation_limit(
            client, ObjectIds.Server_ServerCapabilities_OperationLimits_MaxNodesPerRead, 100
        )

    async def _subscribe(self, client: Client) -> _BulkSubscription | None:
        cfg = self.config
        subscribed = [i for i, t in enumerate(self._slots.tags) if t.mode == "subscribe"]
        if not subscribed:
            return None
        params = ua.CreateSubscriptionParameters()
        params.RequestedPublishingInterval = cfg.publishing_interval_ms
        keepalive = max(
            1, math.ceil(cfg.watchdog_interval_s * 1000 / cfg.publishing_interval_ms / 2)
        )
        params.RequestedMaxKeepAliveCount = keepalive
        params.RequestedLifetimeCount = keepalive * 10
        params.MaxNotificationsPerPublish = cfg.max_notifications_per_publish
        params.PublishingEnabled = True
        params.Priority = 0
        sub = _BulkSubscription(client.uaclient.session, params, self._collector)
        await sub.init()
        per_call = await self._items_per_call(client)
        self.items_per_call_used = per_call
        mfilter = ua.DataChangeFilter(Trigger=ua.DataChangeTrigger.StatusValueTimestamp)
        created = 0
        for start in range(0, len(subscribed), per_call):
            part = subscribed[start : start + per_call]
            requests = []
            for slot in part:
                tag = self._slots.tags[slot]
                rv = ua.ReadValueId(
                    NodeId=ua.NodeId.from_string(tag.node), AttributeId=AttributeIds.Value
                )
                mparams = ua.MonitoringParameters(
                    ClientHandle=slot + 1,
                    SamplingInterval=cfg.sampling_interval_ms,
                    Filter=mfilter,
                    QueueSize=cfg.queue_size,
                    DiscardOldest=True,
                )
                requests.append(
                    ua.MonitoredItemCreateRequest(
                        ItemToMonitor=rv,
                        MonitoringMode=ua.MonitoringMode.Reporting,
                        RequestedParameters=mparams,
                    )
                )
            results = await sub.create_monitored_items(requests)
            for slot, result in zip(part, results, strict=True):
                if isinstance(result, ua.StatusCode):
                    node = self._slots.tags[slot].node
                    reason = result.name
                    if self.bad_nodes.get(node) != reason:
                        log.warning(
                            "OPC UA source %s: node %s refused (%s); the other nodes go on",
                            self.name,
                            node,
                            reason,
                        )
                    self.bad_nodes[node] = reason
                    self.stats.reject(reason)
                else:
                    created += 1
        self.monitored_items = created
        return sub

    async def _polling(self, client: Client) -> list[tuple[str, Work]]:
        """One ``poll`` task per poll interval; reads are cut to the server's MaxNodesPerRead."""
        groups: dict[float, list[int]] = {}
        for slot, tag in enumerate(self._slots.tags):
            if tag.mode == "poll":
                groups.setdefault(tag.poll_interval_s, []).append(slot)
        if not groups:
            return []
        per_read = await self._nodes_per_read(client)
        self.nodes_per_read_used = per_read
        return [
            ("poll", functools.partial(self._poll, client, interval, slots, per_read))
            for interval, slots in groups.items()
        ]

    async def _poll(
        self, client: Client, interval_s: float, slots: list[int], per_read: int
    ) -> None:
        nodes = [client.get_node(self._slots.tags[s].node) for s in slots]
        last: dict[int, tuple[Any, Any]] = {}
        while True:
            values: list[ua.DataValue] = []
            # a Read with more nodes than the server's limit is refused whole (BadTooManyOperations)
            for start in range(0, len(nodes), per_read):
                values.extend(await client.read_attributes(nodes[start : start + per_read]))
            fresh_slots: list[int] = []
            fresh: list[ua.DataValue] = []
            for slot, dv in zip(slots, values, strict=True):
                if (
                    dv.StatusCode is not None
                    and dv.StatusCode.value == StatusCodes.BadNodeIdUnknown
                ):
                    node = self._slots.tags[slot].node
                    if node not in self.bad_nodes:
                        log.warning("OPC UA source %s: polled node %s unknown", self.name, node)
                    self.bad_nodes[node] = "BadNodeIdUnknown"
                    self.stats.reject("BadNodeIdUnknown")
                    continue
                # polling re-reads unchanged values: only a new (value, timestamp) is a sample
                key = (dv.Value.Value if dv.Value is not None else None, dv.SourceTimestamp)
                if last.get(slot) != key:
                    last[slot] = key
                    fresh_slots.append(slot)
                    fresh.append(dv)
            if fresh:
                self._collector.add_values(fresh_slots, fresh)
            await asyncio.sleep(interval_s)

    async def _watchdog(self, client: Client, sub: _BulkSubscription | None) -> None:
        cfg = self.config
        current_time = client.get_node(f"i={ObjectIds.Server_ServerStatus_CurrentTime}")
        # keep-alives come every keepalive_count * publishing interval; three missed = dead
        stale_s = max(3 * cfg.watchdog_interval_s, 3 * cfg.publishing_interval_ms / 1000)
        while True:
            await asyncio.sleep(cfg.watchdog_interval_s)
            try:
                await asyncio.wait_for(current_time.read_value(), timeout=cfg.request_timeout_s)
            except Exception as exc:
                raise SourceUnavailable(
                    f"OPC UA server {cfg.endpoint} stopped answering", detail=repr(exc)
                ) from exc
            if sub is not None and sub.last_publish_at is not None:
                silent_s = time.monotonic() - sub.last_publish_at
                if silent_s > stale_s:
                    raise SourceUnavailable(
                        f"OPC UA subscription on {cfg.endpoint} went silent",
                        detail=f"no publish response for {silent_s:.0f}s",
                    )

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.flush_interval_s)
            await self._flush()

    async def _flush(self) -> None:
        drained = self._collector.drain()
        if drained is not None:
            status = drained[2]
            # InfoType DataValue (0x400) + Overflow (0x80): the server's queue for that item
            # overflowed and it discarded values; counted and logged, so a too-small queue_size
            # is never silent
            overflow = int(np.count_nonzero((status & 0x480) == 0x480))
            if overflow:
                if not self.stats.rejected.get("server_queue_overflow"):
                    log.warning(
                        "OPC UA source %s: the server discarded values (queue overflow); raise "
                        "queue_size or lower sampling",
                        self.name,
                    )
                self.stats.reject("server_queue_overflow", overflow)
        # counted by the runtime: device samples stored, or refused by the outbox with a reason
        await self.runtime.flush(drained)
