"""``zhizao gateway browse``: list an OPC UA server's variables and propose a tag map.

The address space is browsed breadth-first from ``Objects`` (one Browse call per level and batch,
not one per node; continuation points are followed with BrowseNext, so a server that pages its
references loses none), variables are listed with browse path, data type and node id, and
companion specifications are recognised by namespace URI or browse names:

* OPC 40502 (CNC Systems): ``CncInterface`` / ``CncChannelList`` / ``CncSpindleList``
* OPC 40501 (Machine Tools): ``Monitoring`` (channel state, operation mode, spindles),
  ``Production`` (active program state, statistics, job counters)
* OPC 40001 (Machinery): ``MachineryItemState`` / ``MachineryOperationMode`` /
  ``OperationCounters``
* PackML: ``StateCurrent`` / ``UnitModeCurrent``

What to look for comes from the machine profiles (``zhizao.profiles``): each recognised variable
is proposed with its profile signal name (``machinery_item_state``, ``part_count``, ...), which
are the names the profile's state map and the KPI engine's counter roles read, and each machine
gets the profile its variables belong to (written as a comment for the site model).
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

from zhizao.errors import ConfigError, SourceUnavailable
from zhizao.profiles import PROFILES
from zhizao.site import StateProfile

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

# namespace URIs without the trailing slash (servers spell them both ways)
SPEC_URIS = {
    "http://opcfoundation.org/UA/CNC": "OPC 40502",
    "http://opcfoundation.org/UA/MachineTool": "OPC 40501",
    "http://opcfoundation.org/UA/Machinery": "OPC 40001",
    "http://opcfoundation.org/UA/PackML": "PackML",
}
_SPEC_MARKERS = {
    "CncInterface": "OPC 40502",
    "CncChannelList": "OPC 40502",
    "CncSpindleList": "OPC 40502",
    "MachineryItemState": "OPC 40001",
    "MachineryOperationMode": "OPC 40001",
    "OperationCounters": "OPC 40001",
    "Monitoring": "OPC 40501",
    "PackMLObject": "PackML",
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
    note: str = ""  # why this source only approximates the signal (one part per run, ...)


@dataclass
class BrowseResult:
    endpoint: str
    namespaces: list[str]
    variables: list[VariableInfo] = field(default_factory=list)
    specs: Counter[str] = field(default_factory=Counter)
    proposals: list[TagProposal] = field(default_factory=list)
    truncated: bool = False
    # machine -> the profile its variables follow (for the site model's machine type)
    profiles: dict[str, StateProfile] = field(default_factory=dict)
    # recognised, but not a signal of the machine's profile (left out of the tag map)
    left_out: list[TagProposal] = field(default_factory=list)


@dataclass(frozen=True)
class _Rule:
    spec: str
    names: tuple[str, ...]  # browse name of the variable
    measurement: str
    signal: str
    type: str
    parent: str | None = None  # regex the parent's browse name must match
    context: str | None = None  # regex some ancestor's browse name must match
    rank: int = 0  # several sources of one signal on a machine: the lowest rank is taken
    note: str = ""


def _rules() -> tuple[_Rule, ...]:
    """One rule per browse match of every profile signal (shared signals once)."""
    seen: set[tuple[str, str, tuple[str, ...], str | None, str | None]] = set()
    out: list[_Rule] = []
    for profile in PROFILES.values():
        for ps in profile.signals:
            sc = ps.signal
            for rank, m in enumerate(ps.browse):
                key = (sc.name, m.spec, m.names, m.parent, m.context)
                if key in seen:
                    continue
                seen.add(key)
                out.append(
                    _Rule(
                        m.spec,
                        m.names,
                        sc.measurement,
                        sc.name,
                        sc.dtype,
                        m.parent,
                        m.context,
                        rank,
                        m.note,
                    )
                )
    # a rule with a parent or context is more specific than a bare name
    out.sort(key=lambda r: (r.parent is None and r.context is None, r.rank))
    return tuple(out)


_RULES = _rules()
# which profile a machine follows, by the companion specifications of its variables (a CNC also
# carries OPC 40001 states; a machine tool carries them too)
_PROFILE_BY_SPEC: tuple[tuple[str, StateProfile], ...] = (
    ("OPC 40502", StateProfile.OPC40502),
    ("OPC 40501", StateProfile.OPC40501),
    ("OPC 40001", StateProfile.OPC40001),
    ("PackML", StateProfile.PACKML),
)

_MACHINE_CONTAINERS = {"Machines", "MachineTools", "DeviceSet"}
_SPEC_ROOTS = {
    "CncInterface",
    "Monitoring",
    "Production",
    "MachineryItemState",
    "MachineryOperationMode",
    "MachineryBuildingBlocks",
    "OperationCounters",
    "PackMLObject",
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


def _match(var: VariableInfo) -> _Rule | None:
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
        return rule
    return None


def machine_profiles(proposals: list[TagProposal]) -> dict[str, StateProfile]:
    """The profile of each machine: the most specific companion specification among its
    recognised variables (a CNC with OPC 40001 states is ``opc40502``)."""
    specs: dict[str, set[str]] = {}
    for p in proposals:
        specs.setdefault(p.machine, set()).add(p.spec)
    out: dict[str, StateProfile] = {}
    for machine, found in specs.items():
        for spec, profile in _PROFILE_BY_SPEC:
            if spec in found:
                out[machine] = profile
                break
    return out


def propose(variables: list[VariableInfo]) -> list[TagProposal]:
    """Tag proposals for the recognised variables, named like the machine's profile signals."""
    return _propose(variables)[0]


def _propose(
    variables: list[VariableInfo],
) -> tuple[list[TagProposal], dict[str, StateProfile], list[TagProposal]]:
    raw: list[tuple[TagProposal, str | None, int]] = []
    for var in variables:
        rule = _match(var)
        if rule is None:
            continue
        prop = TagProposal(
            rule.spec, _machine_of(var.path), rule.measurement, rule.signal, rule.type, var,
            rule.note,
        )  # fmt: skip
        raw.append((prop, _element(var.path, rule.context), rule.rank))
    # one source per signal and machine where the profile lists alternatives (a lifetime part
    # count before a job's runs): the lowest rank wins; channels and spindles of equal rank stay
    best: dict[tuple[str, str], int] = {}
    for prop, _, rank in raw:
        best[(prop.machine, prop.signal)] = min(best.get((prop.machine, prop.signal), rank), rank)
    kept = [(p, e) for p, e, rank in raw if rank == best[(p.machine, p.signal)]]
    profiles = machine_profiles([p for p, _ in kept])
    # several channels or spindles on one machine: the first keeps the profile's name (what the
    # KPI roles read), the others are prefixed with their element so fields stay distinct
    firsts: dict[tuple[str, str, str], str | None] = {}
    for prop, element in sorted(kept, key=lambda pe: (pe[1] or "", pe[0].variable.browse_path)):
        firsts.setdefault((prop.machine, prop.measurement, prop.signal), element)
    out: list[TagProposal] = []
    left_out: list[TagProposal] = []
    taken: set[tuple[str, str, str]] = set()
    for prop, element in kept:
        profile = profiles.get(prop.machine)
        slot = (prop.machine, prop.signal, element or "")
        if slot in taken or (
            profile is not None and prop.signal not in PROFILES[profile].signal_names()
        ):
            # outside the machine's profile, or a second variable for one signal: listed, not
            # mapped (two tags must not write one field)
            left_out.append(prop)
            continue
        taken.add(slot)
        if element and firsts[(prop.machine, prop.measurement, prop.signal)] != element:
            prop = TagProposal(
                prop.spec,
                prop.machine,
                prop.measurement,
                f"{_snake(element)}_{prop.signal}",
                prop.type,
                prop.variable,
                prop.note,
            )
        out.append(prop)
    return out, profiles, left_out


async def _connect(endpoint: str, options: BrowseOptions) -> Client:
    client = Client(endpoint, timeout=10)
    if options.username is not None:
        client.set_user(options.username)
        client.set_password(options.password or "")
    if options.security != "None":
        parts = options.security.split(",")
        policy = None
        if len(parts) == 4:
            policy = getattr(security_policies, f"SecurityPolicy{parts[0].replace('_', '')}", None)
        if policy is None or not hasattr(ua.MessageSecurityMode, parts[1]):
            raise ConfigError(
                f"--security {options.security!r} is not a security setting",
                key="--security",
                expected="'None' or '<policy>,<Sign|SignAndEncrypt>,<client cert>,<client key>'",
            )
        mode = getattr(ua.MessageSecurityMode, parts[1])
        server_der = await _trusted_server_certificate(client, endpoint, options, policy.URI, mode)
        await client.set_security(policy, parts[2], parts[3], None, server_der, mode)
    await client.connect()
    return client


def offered_security(endpoints: list[ua.EndpointDescription]) -> list[str]:
    """``<policy>/<mode>`` of each endpoint a server offers (``None/None``, ...)."""
    return sorted(
        {f"{e.SecurityPolicyUri.rsplit('#', 1)[-1]}/{e.SecurityMode.name}" for e in endpoints}
    )


async def _trusted_server_certificate(
    client: Client,
    endpoint: str,
    options: BrowseOptions,
    policy_uri: str,
    mode: ua.MessageSecurityMode,
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
    match = [e for e in endpoints if e.SecurityPolicyUri == policy_uri and e.SecurityMode == mode]
    if not match:
        # a configuration error, not an outage: connecting again would not help
        raise ConfigError(
            f"OPC UA server {endpoint} does not offer {policy_uri.rsplit('#', 1)[-1]}/"
            f"{mode.name}; it offers {', '.join(offered_security(endpoints))}",
            key="--security",
        )
    if not match[0].ServerCertificate:
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


async def _browse_all(
    client: Client, params: ua.BrowseParameters
) -> list[list[ua.ReferenceDescription]]:
    """Every reference of every node browsed: a server may return part of a node's references
    with a continuation point (its MaxReferencesPerNode, or a large folder); BrowseNext fetches
    the rest until none is left."""
    results = await client.uaclient.browse(params)
    refs = [list(r.References or []) for r in results]
    pending = {i: r.ContinuationPoint for i, r in enumerate(results) if r.ContinuationPoint}
    while pending:
        order = list(pending)
        nxt = await client.uaclient.browse_next(
            ua.BrowseNextParameters(
                ReleaseContinuationPoints=False,
                ContinuationPoints=[pending[i] for i in order],
            )
        )
        pending = {}
        for i, res in zip(order, nxt, strict=True):
            refs[i] += list(res.References or [])
            if res.ContinuationPoint:
                pending[i] = res.ContinuationPoint
    return refs


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
                results = await _browse_all(client, params)
                for (_nid, path), refs in zip(part, results, strict=True):
                    for ref in refs:
                        child = ref.NodeId
                        key = child.to_string()
                        if key in visited or child.NamespaceIndex == 0:
                            continue  # ns 0 is the server's own standard nodes
                        visited.add(key)
                        name = ref.BrowseName.Name
                        cpath = (*path, name)
                        spec = SPEC_URIS.get(
                            namespaces[child.NamespaceIndex].rstrip("/"), ""
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
        result.proposals, result.profiles, result.left_out = _propose(result.variables)
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
        profiles = ", ".join(f"{m}: {p.value}" for m, p in sorted(result.profiles.items()))
        lines.append(
            f"# proposed tag map: {len(result.proposals)} tags (use --emit-config)"
            + (f"; profiles {profiles}" if profiles else "")
        )
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
    if result.profiles:
        # the signal names are the profile's, so the site model needs only the profile's name
        header += "# site model: a machine type per profile (signals and state map by default)\n"
        for machine, profile in sorted(result.profiles.items()):
            header += f"#   {machine}: machine type with profile: {profile.value}\n"
    for p in result.proposals:
        if p.note:
            header += f"# {p.machine} {p.signal} <- {p.variable.browse_path}: {p.note}\n"
    for p in result.left_out:
        own = result.profiles.get(p.machine)
        header += (
            f"# left out ({p.signal} of profile {own.value if own else '-'} is taken or "
            f"not the profile's): {p.variable.browse_path}\n"
        )
    return header + yaml.safe_dump({"tags": tags}, sort_keys=False)
