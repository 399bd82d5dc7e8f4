"""The OPC UA side of the demonstration factory (asyncua ``Server``).

Address space (namespace URIs of the companion specifications; instances in ``urn:zhizao:simulator``)::

    Objects/
      Machinery:Machines/
        Sim:<machine id>/
          Machinery:Identification/DI:Manufacturer, DI:Model, DI:SerialNumber
          Machinery:MachineryBuildingBlocks/
            Machinery:MachineryItemState/CurrentState        LocalizedText (Executing, ...)
            Machinery:MachineryOperationMode/CurrentState    LocalizedText (Processing, Setup, ...)
          Machinery:Monitoring/Machinery:PartsProducedInLifetime
          CNC:CncInterface/CNC:CncChannelList/CNC:Channel1/   ChannelStatus, ActProgramStatus,
                                                              ActOperationMode, FeedOverride,
                                                              ActMainProgramName
          CNC:CncInterface/CNC:CncSpindleList/CNC:Spindle1/   ActSpeed, ActLoad, ActStatus, Override
          PackML:PackMLObject/PackML:Status/                  StateCurrent, UnitModeCurrent, CurMachSpeed
          Sim:Production/   ProductId, PartCounter, GoodPartCounter, ScrapPartCounter, ReworkPartCounter
          Sim:Alarms/       AlarmActive, AlarmText
          Sim:Signals/      S0000.. (extra analog signals for load tests)

Values come from the scenario's change table with their simulated SourceTimestamp. Every update
loop yields to the event loop every few hundred writes, or clients starve.

Security: endpoints with None and Basic256Sha256 SignAndEncrypt; the server certificate is created
on first run in ``<state_dir>/pki/own`` and kept. Client certificates are trusted when their DER
file is in ``<state_dir>/pki/trusted`` (rejected ones are copied to ``pki/rejected`` so an operator
can move them), unless ``trust_any_client``. With ``users`` set, anonymous sessions are refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
from asyncua import ua as _ua
from asyncua.common.utils import ServiceError
from asyncua.crypto.cert_gen import setup_self_signed_certificate
from asyncua.crypto.permission_rules import User, UserRole
from asyncua.server.server import Server
from asyncua.server.user_managers import UserManager
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from simulator.clock import SimClock
from simulator.config import NS_CNC, NS_DI, NS_MACHINERY, NS_PACKML, NS_SIM
from simulator.scenario import Scenario
from simulator.signals import BAD, NS_UA, ChangeTable, build_change_table
from zhizao.site import StateProfile

__all__ = [
    "OpcUaFactoryServer",
    "SharedDataValue",
    "ns_to_datetime",
    "server_certificate_paths",
]

log = logging.getLogger(__name__)
# asyncua's type hints (Int16, UInt32, DateTime aliases) do not accept plain ints and datetimes
ua: Any = _ua
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
YIELD_EVERY = 200  # writes between yields to the event loop


class SharedDataValue(_ua.DataValue):
    """A DataValue this server never mutates after writing it. asyncua deep-copies the value for
    every monitored item on every change, which cost ~80 % of the server's time in profiles;
    sharing an immutable value is safe and encodes to the same bytes."""

    def __deepcopy__(self, memo: dict[int, Any]) -> SharedDataValue:
        return self


# construct through Any: asyncua types the timestamps as its DateTime alias, not datetime
_data_value: Any = SharedDataValue


def ns_to_datetime(ts_ns: int) -> datetime:
    return _EPOCH + timedelta(microseconds=ts_ns // 1000)


def server_certificate_paths(state_dir: Path) -> tuple[Path, Path]:
    own = state_dir / "pki" / "own"
    return own / "server_cert.der", own / "server_key.pem"


class _PasswordUsers(UserManager):
    """Username/password users; anonymous and unknown users are refused."""

    def __init__(self, users: dict[str, str]) -> None:
        self._users = dict(users)

    def get_user(
        self,
        iserver: Any,
        username: str | None = None,
        password: str | None = None,
        certificate: Any = None,
    ) -> User | None:
        if username is None or username not in self._users:
            return None
        expected = self._users[username].encode()
        given = (password or "").encode()
        return (
            User(role=UserRole.User, name=username)
            if hmac.compare_digest(expected, given)
            else None
        )


class _TrustList:
    """Trust client certificates whose DER file lies in ``trusted/`` (fingerprint pinning)."""

    def __init__(self, pki: Path, trust_any: bool) -> None:
        self.trusted = pki / "trusted"
        self.rejected = pki / "rejected"
        self.trust_any = trust_any
        self.trusted.mkdir(parents=True, exist_ok=True)
        self.rejected.mkdir(parents=True, exist_ok=True)

    def _fingerprints(self) -> set[bytes]:
        out: set[bytes] = set()
        for p in self.trusted.iterdir():
            data = p.read_bytes()
            try:
                cert = (
                    x509.load_pem_x509_certificate(data)
                    if data.lstrip().startswith(b"-----")
                    else x509.load_der_x509_certificate(data)
                )
            except ValueError:
                log.warning("ignoring %s in the trust list: not a certificate", p)
                continue
            out.add(cert.fingerprint(hashes.SHA256()))
        return out

    async def __call__(
        self, cert: x509.Certificate, app_description: ua.ApplicationDescription
    ) -> None:
        if self.trust_any:
            return
        fingerprint = cert.fingerprint(hashes.SHA256())
        if fingerprint in self._fingerprints():
            return
        name = fingerprint.hex()[:16]
        (self.rejected / f"{name}.der").write_bytes(cert.public_bytes(serialization.Encoding.DER))
        log.warning(
            "refused OPC UA client certificate %s (%s); move it from %s to %s to trust it",
            name,
            app_description.ApplicationUri,
            self.rejected,
            self.trusted,
        )
        raise ServiceError(ua.StatusCodes.BadCertificateUntrusted)


class OpcUaFactoryServer:
    """Serves the machines ``machines`` of ``scenario`` on ``endpoint`` and plays their values."""

    def __init__(
        self,
        scenario: Scenario,
        clock: SimClock,
        endpoint: str,
        state_dir: Path,
        *,
        machines: list[int] | None = None,
        users: dict[str, str] | None = None,
        trust_any_client: bool = False,
        signals_per_machine: int | None = None,
        tick_s: float = 0.05,
    ) -> None:
        self.scenario = scenario
        self.clock = clock
        self.endpoint = endpoint
        self.state_dir = Path(state_dir)
        self.machines = list(range(len(scenario.machines))) if machines is None else list(machines)
        self.users = users
        self.trust_any_client = trust_any_client
        self.signals_per_machine = (
            scenario.config.signals_per_machine
            if signals_per_machine is None
            else signals_per_machine
        )
        self.tick_s = tick_s
        self.table: ChangeTable = build_change_table(scenario, self.machines)
        self.values_written = 0
        self._server: Server | None = None
        self._node_ids: list[ua.NodeId] = []
        self._vtypes: list[ua.VariantType] = []
        self._extra_ids: list[ua.NodeId] = []
        self._extra_attrs: list[Any] = []
        self._pos = 0
        self._task: asyncio.Task[None] | None = None
        self._ns: dict[str, int] = {}
        self.finished = asyncio.Event()

    # --- life cycle --------------------------------------------------------------------------------
    async def start(self) -> None:
        server = Server(user_manager=_PasswordUsers(self.users) if self.users else None)
        await server.init()
        server.set_endpoint(self.endpoint)
        server.set_server_name("zhizao demonstration factory")
        await server.set_application_uri("urn:zhizao:simulator:server")
        server.set_security_policy(
            [
                ua.SecurityPolicyType.NoSecurity,
                ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt,
            ]
        )
        if self.users:
            server.set_identity_tokens([ua.UserNameIdentityToken])
        cert_path, key_path = server_certificate_paths(self.state_dir)
        cert_path.parent.mkdir(parents=True, exist_ok=True)
        await setup_self_signed_certificate(
            key_path,
            cert_path,
            "urn:zhizao:simulator:server",
            "127.0.0.1",
            [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH],
            {"commonName": "zhizao simulator", "organizationName": "zhizao"},
        )
        await server.load_certificate(str(cert_path))
        await server.load_private_key(str(key_path))
        server.set_certificate_validator(_TrustList(self.state_dir / "pki", self.trust_any_client))
        for uri in (NS_SIM, NS_MACHINERY, NS_DI, NS_CNC, NS_PACKML):
            self._ns[uri] = await server.register_namespace(uri)
        self._ns[NS_UA] = 0
        await self._build_address_space(server)
        self._server = server
        await server.start()
        nodes = server.iserver.aspace._nodes  # asyncua internals: see tick()
        self._extra_attrs = [
            nodes[nid].attributes[ua.AttributeIds.Value] for nid in self._extra_ids
        ]
        await self._catch_up()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._server is not None:
            await self._server.stop()
            self._server = None

    async def __aenter__(self) -> OpcUaFactoryServer:
        await self.start()
        self._task = asyncio.create_task(self.run())
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # --- address space -----------------------------------------------------------------------------
    async def _build_address_space(self, server: Server) -> None:
        sc = self.scenario
        sim = self._ns[NS_SIM]
        ma = self._ns[NS_MACHINERY]
        machines_folder = await server.nodes.objects.add_folder(
            ua.NodeId("Machines", sim), ua.QualifiedName("Machines", ma)
        )
        var_by_machine: dict[int, list[int]] = {}
        for k, spec in enumerate(self.table.variables):
            var_by_machine.setdefault(spec.machine, []).append(k)
        self._node_ids = [ua.NodeId("", 0)] * len(self.table.variables)
        self._vtypes = [ua.VariantType.Null] * len(self.table.variables)
        for mi in self.machines:
            info = sc.machines[mi]
            obj = await machines_folder.add_object(
                ua.NodeId(info.id, sim), ua.QualifiedName(info.id, sim)
            )
            created: dict[tuple[tuple[str, str], ...], Any] = {(): obj}

            ident = await self._ensure_object(created, ((NS_MACHINERY, "Identification"),), info.id)
            for name, value in (
                ("Manufacturer", "zhizao simulated machines"),
                ("Model", "VMC-850" if info.profile is StateProfile.OPC40502 else "ASM-20"),
                ("SerialNumber", f"SIM-{sc.seed}-{info.id}"),
            ):
                await ident.add_variable(
                    ua.NodeId(f"{info.id}.Identification.{name}", sim),
                    ua.QualifiedName(name, self._ns[NS_DI]),
                    value,
                    ua.VariantType.String,
                )
            for k in var_by_machine.get(mi, []):
                spec = self.table.variables[k]
                parent = await self._ensure_object(created, spec.path[:-1], info.id)
                uri, name = spec.path[-1]
                vtype, initial = _variant(spec.vtype, spec.initial)
                node = await parent.add_variable(
                    ua.NodeId(f"{info.id}.{spec.node_id}", sim),
                    ua.QualifiedName(name, self._ns[uri]),
                    initial,
                    vtype,
                )
                self._node_ids[k] = node.nodeid
                self._vtypes[k] = vtype
            if self.signals_per_machine:
                folder = await self._ensure_object(created, ((NS_SIM, "Signals"),), info.id)
                for j in range(self.signals_per_machine):
                    node = await folder.add_variable(
                        ua.NodeId(f"{info.id}.Signals.S{j:04d}", sim),
                        ua.QualifiedName(f"S{j:04d}", sim),
                        0.0,
                        ua.VariantType.Double,
                    )
                    self._extra_ids.append(node.nodeid)
        n = len(self._extra_ids)
        rng = np.random.default_rng([self.scenario.seed, 3_000_000, *self.machines[:1]])
        self._extra_phase = rng.uniform(0, 2 * math.pi, n)
        self._extra_period_s = rng.uniform(60, 3600, n)
        self._extra_base = rng.uniform(10, 100, n)

    async def _ensure_object(
        self,
        created: dict[tuple[tuple[str, str], ...], Any],
        path: tuple[tuple[str, str], ...],
        mid: str,
    ) -> Any:
        if path in created:
            return created[path]
        parent = await self._ensure_object(created, path[:-1], mid)
        uri, name = path[-1]
        node_id = ua.NodeId(mid + "." + ".".join(n for _, n in path), self._ns[NS_SIM])
        node = await parent.add_object(node_id, ua.QualifiedName(name, self._ns[uri]))
        created[path] = node
        return node

    # --- playing -------------------------------------------------------------------------------------
    async def _write(self, k: int, value: Any, ts_ns: int) -> None:
        assert self._server is not None
        now = datetime.now(UTC)
        if value is BAD:
            dv = _data_value(
                StatusCode=ua.StatusCode(ua.StatusCodes.BadNoCommunication),
                SourceTimestamp=ns_to_datetime(ts_ns),
                ServerTimestamp=now,
            )
        else:
            vtype = self._vtypes[k]
            v = ua.LocalizedText(value) if vtype is ua.VariantType.LocalizedText else value
            dv = _data_value(
                Value=ua.Variant(v, vtype),
                SourceTimestamp=ns_to_datetime(ts_ns),
                ServerTimestamp=now,
            )
        await self._server.iserver.aspace.write_attribute_value(
            self._node_ids[k], ua.AttributeIds.Value, dv
        )
        self.values_written += 1

    async def _catch_up(self) -> None:
        """Publish every variable's value as of the clock's now (with its change time)."""
        now = min(self.clock.now_ns(), self.scenario.end_ns)
        j = int(np.searchsorted(self.table.ts_ns, now, side="right"))
        last: dict[int, int] = {}
        for pos in range(j):
            last[int(self.table.var[pos])] = pos
        for n, pos in enumerate(last.values()):
            await self._write(
                int(self.table.var[pos]), self.table.values[pos], int(self.table.ts_ns[pos])
            )
            if n % YIELD_EVERY == YIELD_EVERY - 1:
                await asyncio.sleep(0)
        self._pos = j

    async def tick(self) -> int:
        """Publish every change up to the clock's now; returns the number of values written."""
        now = min(self.clock.now_ns(), self.scenario.end_ns)
        j = int(np.searchsorted(self.table.ts_ns, now, side="right"))
        written = 0
        ts, var, values = self.table.ts_ns, self.table.var, self.table.values
        for pos in range(self._pos, j):
            await self._write(int(var[pos]), values[pos], int(ts[pos]))
            written += 1
            if written % YIELD_EVERY == 0:
                await asyncio.sleep(0)
        self._pos = max(self._pos, j)
        if self._extra_ids and self.clock.started:
            t_s = now / 1e9
            vals = (
                self._extra_base
                * (1.0 + 0.2 * np.sin(2 * math.pi * t_s / self._extra_period_s + self._extra_phase))
                + (now // 1_000_000 % 1000) * 1e-6
            )  # always a change, even at the same phase
            source = ns_to_datetime(now)
            server_now = datetime.now(UTC)
            double = ua.VariantType.Double
            for n, (att, v) in enumerate(zip(self._extra_attrs, vals.tolist(), strict=True)):
                # load signals have a fixed type: set the attribute and notify its monitored
                # items directly, without the per-write node lookup and type check
                dv = _data_value(
                    Value=ua.Variant(v, double), SourceTimestamp=source, ServerTimestamp=server_now
                )
                att.value = dv
                for handle, callback in list(att.datachange_callbacks.items()):
                    await callback(handle, dv)
                if n % YIELD_EVERY == YIELD_EVERY - 1:
                    await asyncio.sleep(0)
            written += len(self._extra_ids)
            self.values_written += len(self._extra_ids)
        return written

    async def run(self) -> None:
        """Tick until the scenario ends (then keep serving the last values)."""
        while True:
            await self.tick()
            if self.clock.started and self.clock.now_ns() >= self.scenario.end_ns:
                self.finished.set()
                return
            await asyncio.sleep(self.tick_s)


def _variant(vtype: str, initial: Any) -> tuple[ua.VariantType, Any]:
    kind = getattr(ua.VariantType, vtype)
    if kind is ua.VariantType.LocalizedText:
        return kind, ua.LocalizedText(str(initial))
    return kind, initial
