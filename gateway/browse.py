"""``zhizao gateway browse``: list an OPC UA server's variables and propose a tag map.

The address space is browsed breadth-first from ``Objects`` (one Browse call per level and batch,
not one per node), variables are listed with browse path, data type and node id, and companion
specifications are recognised by namespace URI or browse names:

* OPC 40502 (CNC Systems): ``CncInterface`` / ``CncChannelList`` / ``CncSpindleList``
* OPC 40501 (Machine Tools): ``Monitoring`` / ``Production`` with ``ChannelState``,
  ``OperationMode``, ``RunsCompleted``
* OPC 40001 (Machinery): ``MachineryItemState`` / ``MachineryOperationMode``

For those, the CNC mapping (channel, program and operation states, spindle speed and load, part
counters) is proposed as ready-to-use ``tags:`` entries of an ``opcua`` source.
"""

from __future__ import annotations

import fnmatch
import re
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from asyncua import ua
from asyncua.client.client import Client
from asyncua.crypto import security_policies
from asyncua.ua.attribute_ids import AttributeIds
from asyncua.ua.object_ids import ObjectIds

from zhizao.errors import SourceUnavailable

__all__ = [
    "BrowseOptions",
    "BrowseResult",
    "TagProposal",
    "VariableInfo",
    "browse_server",
    "emit_tag_config",
    "format_listing",
    "propose",
]

SPEC_URIS = {
    "http://opcfoundation.org/UA/CNC/": "OPC 40502",
    "http://opcfoundation.org/UA/MachineTool/": "OPC 40501",
    "http://opcfoundation.org/UA/Machinery/": "OPC 40001",
}
_SPEC_MARKERS = {
    "CncInterface": "OPC 40502",
    "CncChannelList": "OPC 40502",
    "CncSpindleList": "OPC 40502",
    "MachineryItemState": "OPC 40001",
    "MachineryOperationMode": "OPC 40001",
    "Monitoring": "OPC 40501",
}
# built-in DataType node ids -> gateway value type
_BUILTIN_TYPES = {
    1: "bool",
    2: "int",
    3: "int",
    4: "int",
    5: "int",
    6: "int",
    7: "int",
    8: "int",
    9: "int",
    10: "float",
    11: "float",
    12: "string",
    13: "int",
    21: "string",
    26: "float",
    27: "int",
    28: "int",
    29: "int",
}
_BATCH = 500


@dataclass(frozen=True)
class BrowseOptions:
    depth: int = 8
    pattern: str = "*"
    max_nodes: int = 100_000
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    security: str = "None"
    # the same trust rules as the gateway: a trust directory or a pinned SHA-256 fingerprint;
    # trust_once connects to an untrusted server anyway (after printing its fingerprint)
    trust_dir: Path | None = None
    server_fingerprint_sha256: str | None = None
    trust_once: bool = False


@dataclass(frozen=True)
class VariableInfo:
    node_id: str
    path: tuple[str, ...]  # browse names below Objects (namespace prefixes dropped)
    data_type: str  # gateway type: float, int, bool, string, or '?'
    data_type_id: str
    namespace_uri: str

    @property
    def browse_path(self) -> str:
        return "/".join(self.path)


@dataclass(frozen=True)
class TagProposal:
    spec: str
    machine: str
    measurement: str
    signal: str
    type: str
    variable: VariableInfo


@dataclass
class BrowseResult:
    endpoint: str
    namespaces: list[str]
    variables: list[VariableInfo] = field(default_factory=list)
    specs: Counter[str] = field(default_factory=Counter)
    proposals: list[TagProposal] = field(default_factory=list)
    truncated: bool = False


@dataclass(frozen=True)
class _Rule:
    spec: str
    names: tuple[str, ...]  # browse name of the variable (or of its parent when parent_state)
    measurement: str
    signal: str
    type: str | None = None  # None: from the data type
    parent: str | None = None  # regex the parent's browse name must match
    context: str | None = None  # regex some ancestor's browse name must match


_RULES: tuple[_Rule, ...] = (
    # OPC 40502 CNC
    _Rule(
        "OPC 40502",
        ("ChannelStatus",),
        "machine_state",
        "channel_status",
        "int",
        context="CncChannelList",
    ),
    _Rule(
        "OPC 40502",
        ("ActProgramStatus",),
        "machine_state",
        "program_status",
        "int",
        context="CncChannelList",
    ),
    _Rule(
        "OPC 40502",
        ("ActOperationMode",),
        "machine_state",
        "operation_mode",
        "int",
        context="CncChannelList",
    ),
    _Rule(
        "OPC 40502",
        ("ActMainProgramName", "ActProgramName"),
        "program",
        "program_name",
        "string",
        context="CncChannelList",
    ),
    _Rule(
        "OPC 40502",
        ("ActFeedrate",),
        "channel",
        "feedrate_mm_min",
        "float",
        context="CncChannelList",
    ),
    _Rule("OPC 40502", ("ActSpeed",), "spindle", "speed_rpm", "float", context="CncSpindleList"),
    _Rule("OPC 40502", ("ActLoad",), "spindle", "load_pct", "float", context="CncSpindleList"),
    _Rule("OPC 40502", ("ActPower",), "spindle", "power_kw", "float", context="CncSpindleList"),
    _Rule(
        "OPC 40502", ("ActOverride",), "spindle", "override_pct", "float", context="CncSpindleList"
    ),
    # OPC 40501 machine tools
    _Rule(
        "OPC 40501",
        ("ChannelState",),
        "machine_state",
        "channel_state",
        "int",
        context="Monitoring",
    ),
    _Rule(
        "OPC 40501",
        ("OperationMode",),
        "machine_state",
        "operation_mode",
        "int",
        context="Monitoring",
    ),
    _Rule("OPC 40501", ("IsRotating",), "spindle", "rotating", "bool", context="Monitoring"),
    _Rule("OPC 40501", ("Override",), "spindle", "override_pct", "float", context="Monitoring"),
    _Rule("OPC 40501", ("RunsCompleted",), "counter", "parts_total", "int", context="Production"),
    _Rule("OPC 40501", ("RunsPlanned",), "counter", "parts_planned", "int", context="Production"),
    _Rule(
        "OPC 40501",
        ("CurrentState",),
        "machine_state",
        "program_state",
        "string",
        context="ActiveProgram",
    ),
    # OPC 40001 machinery
    _Rule(
        "OPC 40001",
        ("CurrentState",),
        "machine_state",
        "item_state",
        "string",
        parent="MachineryItemState",
    ),
    _Rule(
        "OPC 40001",
        ("CurrentState",),
        "machine_state",
        "operation_mode_state",
        "string",
        parent="MachineryOperationMode",
    ),
    # part counters whatever the spec
    _Rule(
        "generic",
        ("PartsCounter", "PartCounter", "PartCount", "GoodParts", "PartsProduced"),
        "counter",
        "parts_total",
        "int",
    ),
)

_MACHINE_CONTAINERS = {"Machines", "MachineTools", "DeviceSet"}
_SPEC_ROOTS = {
    "CncInterface",
    "Monitoring",
    "Production",
    "MachineryItemState",
    "MachineryOperationMode",
    "Identification",
    "Equipment",
    "Notification",
}


def _snake(name: str) -> str:
    out = re.sub(r"[^A-Za-z0-9]+", "_", name)
    out = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", out).lower().strip("_")
    return out if out and out[0].isalpha() else f"m_{out}"


def _machine_of(path: tuple[str, ...]) -> str:
    """The machine instance a variable belongs to, from its browse path."""
    for i, name in enumerate(path):
        if name in _MACHINE_CONTAINERS and i + 1 < len(path):
            return path[i + 1]
    for i, name in enumerate(path):
        if name in _SPEC_ROOTS and i > 0:
            return path[i - 1]
    return path[0]


def _element(path: tuple[str, ...], context: str | None) -> str | None:
    """The channel / spindle element name: the level just below the context list."""
    if context is None:
        return None
    for i, name in enumerate(path):
        if re.fullmatch(context, name) and i + 2 < len(path):
            return path[i + 1]
    return None


def propose(variables: list[VariableInfo]) -> list[TagProposal]:
    """CNC mapping proposals for the recognised variables (at most one rule per variable)."""
    raw: list[tuple[TagProposal, str | None]] = []
    for var in variables:
        name = var.path[-1]
        parent = var.path[-2] if len(var.path) > 1 else ""
        for rule in _RULES:
            if name not in rule.names:
                continue
            if rule.parent is not None and not re.fullmatch(rule.parent, parent):
                continue
            if rule.context is not None and not any(
                re.fullmatch(rule.context, p) for p in var.path[:-1]
            ):
                continue
            vtype = rule.type or (var.data_type if var.data_type != "?" else "float")
            prop = TagProposal(
                rule.spec, _machine_of(var.path), rule.measurement, rule.signal, vtype, var
            )
            raw.append((prop, _element(var.path, rule.context)))
            break
    # several channels or spindles on one machine: prefix the element so fields stay distinct
    seen = Counter((p.machine, p.measurement, p.signal) for p, _ in raw)
    out: list[TagProposal] = []
    for prop, element in raw:
        if seen[(prop.machine, prop.measurement, prop.signal)] > 1 and element:
            prop = TagProposal(
                prop.spec,
                prop.machine,
                prop.measurement,
                f"{_snake(element)}_{prop.signal}",
                prop.type,
                prop.variable,
            )
        out.append(prop)
    return out


async def _connect(endpoint: str, options: BrowseOptions) -> Client:
    client = Client(endpoint, timeout=10)
    if options.username is not None:
        client.set_user(options.username)
        client.set_password(options.password or "")
    if options.security != "None":
        policy_name, mode, cert, key = options.security.split(",")
        policy = getattr(security_policies, f"SecurityPolicy{policy_name.replace('_', '')}")
        server_der = await _trusted_server_certificate(client, endpoint, options, policy.URI)
        await client.set_security(
            policy, cert, key, None, server_der, getattr(ua.MessageSecurityMode, mode)
        )
    await client.connect()
    return client


async def _trusted_server_certificate(
    client: Client, endpoint: str, options: BrowseOptions, policy_uri: str
) -> bytes:
    """The server certificate of ``endpoint`` if the gateway's trust rules accept it (trust
    directory or pinned fingerprint), or ``trust_once``; else ``SourceUnavailable`` naming the
    fingerprint. Credentials are sent only after this check."""
    from gateway.sources.opcua.source import (
        _first_cert,
        _norm_fp,
        _trusted_fingerprints,
        server_certificate_fingerprint,
    )

    endpoints = await client.connect_and_get_server_endpoints()
    match = [e for e in endpoints if e.SecurityPolicyUri == policy_uri] or list(endpoints)
    if not match or not match[0].ServerCertificate:
        raise SourceUnavailable(
            f"OPC UA server {endpoint} offers no certificate for this security policy"
        )
    der = _first_cert(bytes(match[0].ServerCertificate))
    fp = server_certificate_fingerprint(der)
    trusted = bool(
        options.server_fingerprint_sha256
        and _norm_fp(options.server_fingerprint_sha256) == _norm_fp(fp)
    )
    if not trusted and options.trust_dir is not None:
        trusted = _norm_fp(fp) in _trusted_fingerprints(options.trust_dir)
    if trusted:
        return der
    if options.trust_once:
        print(f"# trusting {endpoint} once: server certificate SHA-256 {fp}", file=sys.stderr)
        return der
    raise SourceUnavailable(
        f"OPC UA server certificate of {endpoint} is not trusted; pass --trust-dir or "
        f"--server-fingerprint {fp}, or --trust-once to connect this time",
        detail=f"SHA-256 {fp}",
    )


async def browse_server(endpoint: str, options: BrowseOptions) -> BrowseResult:
    client = await _connect(endpoint, options)
    try:
        ns_node = client.get_node(f"i={ObjectIds.Server_NamespaceArray}")
        namespaces = [str(u) for u in await ns_node.read_value()]
        result = BrowseResult(endpoint, namespaces)
        objects = ua.NodeId.from_string(f"i={ObjectIds.ObjectsFolder}")
        level: list[tuple[ua.NodeId, tuple[str, ...]]] = [(objects, ())]
        found: list[tuple[ua.NodeId, tuple[str, ...]]] = []
        visited = {objects.to_string()}
        for _depth in range(options.depth + 1):
            nxt: list[tuple[ua.NodeId, tuple[str, ...]]] = []
            for start in range(0, len(level), _BATCH):
                part = level[start : start + _BATCH]
                params = ua.BrowseParameters()
                params.NodesToBrowse = [
                    ua.BrowseDescription(
                        NodeId=nid,
                        BrowseDirection=ua.BrowseDirection.Forward,
                        ReferenceTypeId=ua.NodeId.from_string(
                            f"i={ObjectIds.HierarchicalReferences}"
                        ),
                        IncludeSubtypes=True,
                        NodeClassMask=int(ua.NodeClass.Object) | int(ua.NodeClass.Variable),
                        ResultMask=int(ua.BrowseResultMask.All),
                    )
                    for nid, _ in part
                ]
                results = await client.uaclient.browse(params)
                for (_nid, path), res in zip(part, results, strict=True):
                    for ref in res.References or []:
                        child = ref.NodeId
                        key = child.to_string()
                        if key in visited or child.NamespaceIndex == 0:
                            continue  # ns 0 is the server's own standard nodes
                        visited.add(key)
                        name = ref.BrowseName.Name
                        cpath = (*path, name)
                        spec = SPEC_URIS.get(
                            namespaces[child.NamespaceIndex], ""
                        ) or _SPEC_MARKERS.get(name, "")
                        if spec:
                            result.specs[spec] += 1
                        if ref.NodeClass == ua.NodeClass.Variable:
                            found.append((child, cpath))
                        nxt.append((child, cpath))
                        if len(visited) >= options.max_nodes:
                            result.truncated = True
                            break
            level = nxt
            if not level or result.truncated:
                break
        found = [(n, p) for n, p in found if fnmatch.fnmatchcase("/".join(p), options.pattern)]
        for start in range(0, len(found), _BATCH):
            part = found[start : start + _BATCH]
            dts = await client.read_attributes(
                [client.get_node(n) for n, _ in part], AttributeIds.DataType
            )
            for (nid, path), dv in zip(part, dts, strict=True):
                dt = dv.Value.Value if dv.Value is not None else None
                dt_id = dt.to_string() if isinstance(dt, ua.NodeId) else "?"
                vtype = "?"
                if isinstance(dt, ua.NodeId):
                    if dt.NamespaceIndex == 0 and isinstance(dt.Identifier, int):
                        vtype = _BUILTIN_TYPES.get(dt.Identifier, "?")
                    else:
                        vtype = "int"  # companion-spec enumerations (ChannelStatus, ...)
                result.variables.append(
                    VariableInfo(
                        nid.to_string(), path, vtype, dt_id, namespaces[nid.NamespaceIndex]
                    )
                )
        result.proposals = propose(result.variables)
        return result
    finally:
        await client.disconnect()


def format_listing(result: BrowseResult) -> str:
    lines = [f"# {result.endpoint}: {len(result.variables)} variables"]
    if result.specs:
        lines.append("# companion specifications: " + ", ".join(sorted(result.specs)))
    if result.truncated:
        lines.append("# listing truncated at --max-nodes")
    width = max((len(v.browse_path) for v in result.variables), default=10)
    for v in result.variables:
        lines.append(f"{v.browse_path:<{width}}  {v.data_type:<6}  {v.node_id}")
    if result.proposals:
        lines.append(f"# proposed CNC mapping: {len(result.proposals)} tags (use --emit-config)")
    return "\n".join(lines)


def emit_tag_config(result: BrowseResult, *, asset_prefix: str = "") -> str:
    """A ``tags:`` section for an ``opcua`` source (assets as level mappings)."""
    prefix_levels = [p for p in asset_prefix.strip("/").split("/") if p]
    base: dict[str, str] = dict(zip(("area", "line"), prefix_levels, strict=False))
    tags: list[dict[str, Any]] = []
    for p in result.proposals:
        asset = {**base, "machine": re.sub(r"[^A-Za-z0-9_.\-]", "-", p.machine)}
        if "line" in asset and "area" not in asset:  # pragma: no cover - zip fills area first
            asset.pop("line")
        tags.append(
            {
                "node": p.variable.node_id,
                "asset": asset,
                "measurement": p.measurement,
                "signal": p.signal,
                "type": p.type,
            }
        )
    header = (
        f"# proposed by `zhizao gateway browse {result.endpoint}`: {len(tags)} tags\n"
        f"# recognised: {', '.join(sorted(result.specs)) or 'no companion specification'}\n"
        "# paste under an opcua source; check machine names and units\n"
    )
    return header + yaml.safe_dump({"tags": tags}, sort_keys=False)
