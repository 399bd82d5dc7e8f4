"""Issue 17 item 12: ``gateway browse`` with a security policy checks the server certificate
with the gateway's trust rules before it sends credentials."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from asyncua.crypto.cert_gen import setup_self_signed_certificate
from cryptography.x509.oid import ExtendedKeyUsageOID

from gateway.browse import BrowseOptions, browse_server
from tests.gateway.opcua_server import TestOpcUaServer
from zhizao.errors import SourceUnavailable
from zhizao.localstack import free_port


async def _client_cert(d: Path) -> tuple[Path, Path]:
    d.mkdir(parents=True, exist_ok=True)
    cert, key = d / "client_cert.der", d / "client_key.pem"
    await setup_self_signed_certificate(
        key,
        cert,
        "urn:zhizao:gateway",
        "127.0.0.1",
        [ExtendedKeyUsageOID.CLIENT_AUTH],
        {"commonName": "zhizao browse test"},
    )
    return cert, key


async def test_browse_refuses_an_untrusted_server_and_trusts_by_dir_or_once(
    tmp_path: Path,
) -> None:
    cert, key = await _client_cert(tmp_path / "client")
    security = f"Basic256Sha256,SignAndEncrypt,{cert},{key}"
    async with TestOpcUaServer(free_port(), 3, secure_dir=tmp_path / "server") as server:
        with pytest.raises(SourceUnavailable) as err:
            await browse_server(server.endpoint, BrowseOptions(security=security, depth=3))
        assert "not trusted" in str(err.value) and "SHA-256" in str(err.value)
        trust = tmp_path / "trust"
        trust.mkdir()
        shutil.copy(server.cert_path, trust / "server.der")
        trusted = await browse_server(
            server.endpoint, BrowseOptions(security=security, depth=3, trust_dir=trust)
        )
        once = await browse_server(
            server.endpoint, BrowseOptions(security=security, depth=3, trust_once=True)
        )
    assert len(trusted.variables) >= 3
    assert len(once.variables) == len(trusted.variables)
