"""``zhizao api import-site`` and ``zhizao api token ...`` (in-process, real databases)."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml

from api.db.session import make_engine
from tests.api.sitedata import sim_site, with_pri
from zhizao.cli import main
from zhizao.site import SiteModel


def _write(model: SiteModel, path: Path) -> Path:
    path.write_text(
        yaml.safe_dump(model.model_dump(mode="json", exclude_none=True), sort_keys=False)
    )
    return path


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_import_site_twice_then_a_change(
    db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = sim_site()
    f = _write(model, tmp_path / "site.yaml")
    code, out, _ = _run(capsys, "api", "import-site", str(f), "--db", db_url)
    assert code == 0
    assert f"{model.enterprise}/{model.site}:" in out and "created" in out
    assert f"created machine:{model.machines()[0][2].id}" in out
    code, out, _ = _run(capsys, "api", "import-site", str(f), "--db", db_url)
    assert code == 0
    assert out.strip().startswith(f"{model.enterprise}/{model.site}: unchanged")
    assert "created" not in out

    changed = with_pri(model, model.products[0].id, model.machines()[0][2].id, 55.0)
    code, out, _ = _run(
        capsys, "api", "import-site", str(_write(changed, tmp_path / "b.yaml")), "--db", db_url
    )
    assert code == 0 and "1 created, 0 updated" in out
    engine = make_engine(db_url)
    with engine.connect() as c:
        assert c.execute(sa.text("SELECT count(*) FROM site")).scalar() == 1
        assert c.execute(sa.text("SELECT count(*) FROM product_machine_pri")).scalar() == 1
    engine.dispose()


def test_token_create_prints_the_secret_once_and_list_never(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = f"sqlite:///{tmp_path / 'api.sqlite'}"
    model = sim_site()
    assert (
        _run(capsys, "api", "import-site", str(_write(model, tmp_path / "s.yaml")), "--db", db)[0]
        == 0
    )
    code, out, err = _run(
        capsys, "api", "token", "create", "--name", "tablet", "--role", "engineer",
        "--site", model.site, "--days", "30", "--db", db,
    )  # fmt: skip
    assert code == 0
    secret = out.strip()
    assert secret.startswith("zz_") and len(out.splitlines()) == 1
    assert "shown only now" in err and secret not in err

    code, out, err = _run(capsys, "api", "token", "list", "--db", db)
    assert code == 0
    assert "tablet" in out and model.site in out and "active" in out
    assert secret not in out and secret not in err
    code, out, _ = _run(capsys, "api", "token", "list", "--json", "--db", db)
    assert code == 0 and secret not in out and '"role": "engineer"' in out

    code, out, _ = _run(capsys, "api", "token", "revoke", "1", "--db", db)
    assert code == 0 and "token 1 revoked" in out
    code, out, _ = _run(capsys, "api", "token", "list", "--db", db)
    assert "revoked" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["token", "create", "--name", "x", "--role", "engineer"], "needs the site"),
        (["token", "create", "--name", "x", "--role", "admin", "--site", "s"], "sees every site"),
        (
            ["token", "create", "--name", "x", "--role", "engineer", "--site", "atlantis"],
            "'atlantis' does not exist",
        ),
        (
            ["token", "create", "--name", "x", "--role", "admin", "--expires", "yesterday"],
            "not an ISO 8601",
        ),
        (
            ["token", "create", "--name", "x", "--role", "admin", "--expires", "2001-01-01"],
            "in the past",
        ),
        (["token", "revoke", "42"], "there is no token 42"),
        (["import-site", "/nonexistent/site.yaml"], "cannot read"),
    ],
)
def test_bad_input_exits_2_with_one_sentence(
    argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = f"sqlite:///{tmp_path / 'api.sqlite'}"
    code, out, err = _run(capsys, "api", *argv, "--db", db)
    assert code == 2
    assert message in err
    assert err.startswith("zhizao: ") and len(err.strip().splitlines()) == 1
    assert "Traceback" not in err and out == ""


def test_bad_or_missing_database_url_exits_2(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ZHIZAO_API_DATABASE_URL", raising=False)
    code, _, err = _run(capsys, "api", "token", "list")
    assert code == 2 and "pass --db URL or set ZHIZAO_API_DATABASE_URL" in err
    code, _, err = _run(capsys, "api", "token", "list", "--db", "nosuchdb://x")
    assert code == 2 and "database URL is not valid" in err and len(err.strip().splitlines()) == 1
