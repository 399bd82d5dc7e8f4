"""Outside development, the API's description needs a token like every route but /healthz and
/readyz; in development it is public, with the browsable /docs."""

from __future__ import annotations

from pathlib import Path

import httpx

from api.app import create_app
from api.db.session import make_engine, make_sessionmaker, upgrade
from api.settings import load_settings
from api.tokens import create_token

SAMPLE = Path(__file__).resolve().parents[2] / "api" / "api.sample.yaml"


def _token(db_url: str) -> str:
    upgrade(db_url)
    engine = make_engine(db_url)
    with make_sessionmaker(engine)() as s:
        secret, _ = create_token(s, name="t", role="commission", site=None, expires_at=None)
        s.commit()
    engine.dispose()
    return secret


def _client(app: object) -> httpx.AsyncClient:
    # the app in process (its lifespan entered by the test): no port, no server thread
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1")  # type: ignore[arg-type]


async def test_the_openapi_document_needs_a_token_in_production(tmp_path: Path) -> None:
    db_url = f"sqlite:///{tmp_path / 'api.sqlite'}"
    token = _token(db_url)
    settings = load_settings(SAMPLE, database_url=db_url)
    assert settings.environment == "production"
    app = create_app(settings)
    async with app.router.lifespan_context(app), _client(app) as c:
        assert (await c.get("/openapi.json")).status_code == 401
        bad = await c.get("/openapi.json", headers={"Authorization": "Bearer zz_nope"})
        assert bad.status_code == 401
        doc = await c.get("/openapi.json", headers={"Authorization": f"Bearer {token}"})
        assert doc.status_code == 200 and "/api/v1/kpis" in doc.json()["paths"]
        assert (await c.get("/docs")).status_code == 404
        assert (await c.get("/redoc")).status_code == 404
        assert (await c.get("/healthz")).status_code == 200


async def test_development_keeps_the_browsable_docs(tmp_path: Path) -> None:
    db_url = f"sqlite:///{tmp_path / 'api.sqlite'}"
    settings = load_settings(SAMPLE, database_url=db_url, environment="development")
    app = create_app(settings)
    async with app.router.lifespan_context(app), _client(app) as c:
        assert (await c.get("/openapi.json")).status_code == 200
        assert (await c.get("/docs")).status_code == 200
