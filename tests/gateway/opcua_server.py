"""A small real asyncua server for gateway tests and the gateway benchmark.

In-process: ``async with TestOpcUaServer(port, n_vars, ...) as srv`` then ``await srv.write_round(k)``.
As a process: ``python -m tests.gateway.opcua_server --port P --vars N --rounds R --period-s S``
writes round k (value k, a fresh source timestamp) to every variable, R rounds, then keeps serving;
it prints ``ready`` once listening and ``done <rounds>`` after the last round.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import sys
import weakref
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType

from asyncua import Server, ua
from asyncua.common.callback import Callback, CallbackService, CallbackType, ServerItemCallback
from asyncua.common.utils import ServiceError
from asyncua.crypto.cert_gen import setup_self_signed_certificate
from asyncua.server.uaprocessor import UaProcessor
from asyncua.server.user_managers import UserManager
from asyncua.ua.object_ids import ObjectIds
from asyncua.ua.status_codes import StatusCodes
from asyncua.ua.ua_binary import struct_from_binary
from cryptography.x509.oid import ExtendedKeyUsageOID

NS_URI = "urn:zhizao:test:plant"
BASE_TS = datetime(2026, 1, 1, tzinfo=UTC)


class _PasswordUsers(UserManager):
    def __init__(self, username: str, password: str) -> None:
        self.username, self.password = username, password

    def get_user(self, iserver, username=None, password=None, certificate=None):  # type: ignore[no-untyped-def]
        from asyncua.crypto.permission_rules import User, UserRole

        if username == self.username and password == self.password:
            return User(role=UserRole.User)
        return None


class _Pager:
    """References beyond ``max_refs`` per node, held behind continuation points."""

    def __init__(self, max_refs: int) -> None:
        self.max_refs = max_refs
        self.pending: dict[bytes, list[ua.ReferenceDescription]] = {}
        self._ids = itertools.count()
        self.browse_next_calls = 0

    def page(
        self, refs: list[ua.ReferenceDescription]
    ) -> tuple[list[ua.ReferenceDescription], bytes | None]:
        if len(refs) <= self.max_refs:
            return refs, None
        cp = f"cp-{next(self._ids)}".encode()
        self.pending[cp] = refs[self.max_refs :]
        return refs[: self.max_refs], cp


_PAGERS: weakref.WeakKeyDictionary[object, _Pager] = weakref.WeakKeyDictionary()
_process_message = UaProcessor._process_message


async def _process_with_browse_next(self, typeid, requesthdr, seqhdr, body):  # type: ignore[no-untyped-def]
    pager = _PAGERS.get(self.iserver)
    if pager is None or typeid != ua.NodeId(ua.ObjectIds.BrowseNextRequest_Encoding_DefaultBinary):
        return await _process_message(self, typeid, requesthdr, seqhdr, body)
    pager.browse_next_calls += 1
    params = struct_from_binary(ua.BrowseNextParameters, body)
    results = []
    for cp in params.ContinuationPoints:
        res = ua.BrowseResult()
        refs = pager.pending.pop(cp, None)
        if refs is None:
            res.StatusCode = ua.StatusCode(ua.StatusCodes.BadContinuationPointInvalid)
        elif not params.ReleaseContinuationPoints:
            res.References, res.ContinuationPoint = pager.page(refs)
        results.append(res)
    response = ua.BrowseNextResponse()
    response.Parameters.Results = results
    self.send_response(requesthdr.RequestHandle, seqhdr, response)
    return True


def page_browse_results(server: Server, max_refs: int) -> _Pager:
    """Make a real asyncua server answer Browse as large servers do: at most ``max_refs``
    references per node, the rest behind a continuation point for BrowseNext (asyncua's own
    server returns every reference at once and does not implement BrowseNext)."""
    pager = _Pager(max_refs)
    view = server.iserver.view_service
    browse = view.browse

    def paged(params: ua.BrowseParameters) -> list[ua.BrowseResult]:
        results = browse(params)
        for res in results:
            res.References, res.ContinuationPoint = pager.page(list(res.References))
        return results

    view.browse = paged  # type: ignore[method-assign]
    _PAGERS[server.iserver] = pager
    UaProcessor._process_message = _process_with_browse_next  # type: ignore[method-assign]
    return pager


def node_id(i: int) -> str:
    return f"ns=2;s=Var{i:05d}"


class TestOpcUaServer:
    """An asyncua server with ``n_vars`` Double variables ``ns=2;s=VarNNNNN``."""

    __test__ = False  # not a pytest class

    def __init__(
        self,
        port: int,
        n_vars: int,
        *,
        secure_dir: Path | None = None,
        username: str | None = None,
        password: str | None = None,
        max_items_per_call: int | None = None,
        max_nodes_per_read: int | None = None,
    ) -> None:
        self.port = port
        self.n_vars = n_vars
        self.secure_dir = secure_dir
        self.username, self.password = username, password
        self.max_items_per_call = max_items_per_call
        self.max_nodes_per_read = max_nodes_per_read
        self.read_sizes: list[int] = []  # nodes per Read request of the clients, in order
        self.fail_next_reads = 0  # the next N client Reads of plant variables fail
        self.server: Server | None = None
        self.nodes: list[ua.NodeId] = []

    @property
    def endpoint(self) -> str:
        return f"opc.tcp://127.0.0.1:{self.port}"

    @property
    def cert_path(self) -> Path:
        assert self.secure_dir is not None
        return self.secure_dir / "server_cert.der"

    async def start(self) -> TestOpcUaServer:
        users = (
            _PasswordUsers(self.username, self.password)
            if self.username is not None and self.password is not None
            else None
        )
        server = Server(user_manager=users)
        await server.init()
        server.set_endpoint(f"opc.tcp://127.0.0.1:{self.port}/")
        server.set_server_name("zhizao test server")
        if self.secure_dir is not None:
            self.secure_dir.mkdir(parents=True, exist_ok=True)
            key = self.secure_dir / "server_key.pem"
            await setup_self_signed_certificate(
                key,
                self.cert_path,
                "urn:zhizao:test:server",
                "127.0.0.1",
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH],
                {"commonName": "zhizao test server"},
            )
            await server.set_application_uri("urn:zhizao:test:server")
            await server.load_certificate(str(self.cert_path))
            await server.load_private_key(str(key))
            server.set_security_policy([ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt])
        idx = await server.register_namespace(NS_URI)
        assert idx == 2
        folder = await server.nodes.objects.add_folder(idx, "Plant")
        self.nodes = []
        for i in range(self.n_vars):
            var = await folder.add_variable(ua.NodeId(f"Var{i:05d}", idx), f"Var{i:05d}", 0.0)
            self.nodes.append(var.nodeid)
        if self.max_items_per_call is not None:
            node = server.get_node(
                ua.NodeId(
                    ua.ObjectIds.Server_ServerCapabilities_OperationLimits_MaxMonitoredItemsPerCall
                )
            )
            await node.write_value(ua.Variant(self.max_items_per_call, ua.VariantType.UInt32))
        if self.max_nodes_per_read is not None:
            node = server.get_node(
                f"i={ObjectIds.Server_ServerCapabilities_OperationLimits_MaxNodesPerRead}"
            )
            await node.write_value(ua.Variant(self.max_nodes_per_read, ua.VariantType.UInt32))
        # asyncua publishes the operation limits but does not enforce them: this does, like a
        # real server, with a ServiceFault for the whole request
        server.iserver.callback_service.addListener(
            CallbackType.PreRead,  # type: ignore[arg-type]  # asyncua passes its enum here too
            self._pre_read,
        )
        await server.start()
        self.server = server
        return self

    def _pre_read(self, event: Callback, _dispatcher: CallbackService) -> None:
        if not isinstance(event, ServerItemCallback) or not event.is_external:
            return
        nodes = event.request_params.NodesToRead
        plant = [n for n in nodes if n.NodeId.NamespaceIndex == 2]
        if plant:
            self.read_sizes.append(len(nodes))
        if self.max_nodes_per_read is not None and len(nodes) > self.max_nodes_per_read:
            raise ServiceError(StatusCodes.BadTooManyOperations)
        if plant and self.fail_next_reads > 0:
            self.fail_next_reads -= 1
            raise ServiceError(StatusCodes.BadInternalError)

    async def write_round(self, k: int, *, first: int = 0, count: int | None = None) -> None:
        """Value ``k`` with source timestamp BASE_TS + k ms into variables [first, first+count)."""
        assert self.server is not None
        ts = BASE_TS + timedelta(milliseconds=k)
        end = self.n_vars if count is None else first + count
        iserver = self.server.iserver
        for nid in self.nodes[first:end]:
            dv = ua.DataValue(
                ua.Variant(float(k), ua.VariantType.Double),
                SourceTimestamp=ts,
                ServerTimestamp=datetime.now(UTC),
            )
            await iserver.write_attribute_value(nid, dv)

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop()
            self.server = None

    async def __aenter__(self) -> TestOpcUaServer:
        return await self.start()

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()


async def _main(args: argparse.Namespace) -> None:
    srv = TestOpcUaServer(
        args.port,
        args.vars,
        secure_dir=Path(args.secure_dir) if args.secure_dir else None,
    )
    await srv.start()
    print("ready", flush=True)
    if args.wait_start:
        await asyncio.sleep(args.wait_start)
    if args.wait_go:  # the test says when its client is subscribed
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    loop = asyncio.get_running_loop()
    next_at = loop.time()
    for k in range(args.first_round, args.first_round + args.rounds):
        await srv.write_round(k)
        next_at += args.period_s
        await asyncio.sleep(max(0.0, next_at - loop.time()))
    print(f"done {args.rounds}", flush=True)
    while True:
        await asyncio.sleep(3600)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--vars", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=0)
    parser.add_argument("--first-round", type=int, default=0)
    parser.add_argument("--period-s", type=float, default=0.05)
    parser.add_argument("--wait-start", type=float, default=0.0)
    parser.add_argument("--secure-dir", default="")
    parser.add_argument("--wait-go", action="store_true", help="write rounds after a stdin line")
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_main(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
