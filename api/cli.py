"""``zhizao api``: master data and API tokens from the command line.

    zhizao api import-site SITE.yaml --db URL
    zhizao api token create --name NAME --role ROLE [--site SITE] [--expires DATE|--days N] --db URL
    zhizao api token list --db URL
    zhizao api token revoke ID --db URL

``--db`` defaults to ``$ZHIZAO_API_DATABASE_URL``. Every command brings the database schema up to
date first (the same migrations the API runs at start-up). A token's secret is printed once, by
``create``; the database keeps only its SHA-256, so ``list`` cannot show it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError
from sqlalchemy.orm import Session

from api.db.session import make_engine, make_sessionmaker, upgrade
from api.masterdata import import_site
from api.tokens import ROLES, TokenInfo, create_token, list_tokens, revoke_token
from zhizao.errors import ConfigError, SourceUnavailable
from zhizao.site import load_site

__all__ = ["register"]

DB_ENV = "ZHIZAO_API_DATABASE_URL"
T = TypeVar("T")


def register(subparsers: Any) -> None:
    """Add ``zhizao api`` and its sub-commands."""
    api = subparsers.add_parser("api", help="the HTTP API: serve it, master data, tokens")
    sub = api.add_subparsers(dest="api_command", metavar="SUBCOMMAND")

    imp = sub.add_parser(
        "import-site", help="import (or update) a site model YAML into the API database"
    )
    imp.add_argument("site", metavar="SITE.yaml", help="site model file")
    _db(imp)
    imp.set_defaults(handler=_import_site)

    cc = sub.add_parser(
        "commission-config",
        help="store a commission configuration YAML (cohorts, targets, factors) as a new revision",
    )
    cc.add_argument(
        "config", metavar="COMMISSION.yaml", help="e.g. analytics/commission.sample.yaml"
    )
    cc.add_argument("--reason", required=True, help="why this revision (kept in its history)")
    cc.add_argument("--author", default="cli", help="who stores it (default: cli)")
    _db(cc)
    cc.set_defaults(handler=_commission_config)

    token = sub.add_parser("token", help="create, list and revoke API tokens")
    tsub = token.add_subparsers(dest="token_command", metavar="ACTION")
    create = tsub.add_parser("create", help="create a token and print its secret (once)")
    create.add_argument("--name", required=True, help="who or what uses the token")
    create.add_argument("--role", required=True, choices=ROLES)
    create.add_argument("--site", help="the factory of an engineer or factory_admin token")
    exp = create.add_mutually_exclusive_group()
    exp.add_argument("--expires", help="expiry, ISO 8601 (a date or a time; naive = UTC)")
    exp.add_argument("--days", type=float, help="expires this many days from now")
    _db(create)
    create.set_defaults(handler=_token_create)
    lst = tsub.add_parser("list", help="list tokens (never their secrets)")
    lst.add_argument("--json", action="store_true", help="JSON lines instead of a table")
    _db(lst)
    lst.set_defaults(handler=_token_list)
    rev = tsub.add_parser("revoke", help="revoke a token by id")
    rev.add_argument("id", type=int, help="token id (see `zhizao api token list`)")
    _db(rev)
    rev.set_defaults(handler=_token_revoke)
    token.set_defaults(handler=lambda _a: (token.print_help(), 2)[1])

    run = sub.add_parser("run", help="serve the API (uvicorn) with the settings of api.yaml")
    run.add_argument(
        "-c", "--config", help="api.yaml (see api/api.sample.yaml); default: environment only"
    )
    run.add_argument("--host", help="override `host`")
    run.add_argument("--port", type=int, help="override `port`")
    run.add_argument(
        "--log-format",
        dest="api_log_format",
        choices=("text", "json"),
        help="override `log_format` (default: $ZHIZAO_LOG_FORMAT, else text)",
    )
    run.set_defaults(handler=_run)

    api.set_defaults(handler=lambda _a: (api.print_help(), 2)[1])


def _run(args: argparse.Namespace) -> int:
    from api.server import run_server  # uvicorn and the app only for the server

    fmt = args.api_log_format or getattr(args, "log_format", None)  # `zhizao --log-format`
    return run_server(args.config, host=args.host, port=args.port, log_format=fmt)


def _db(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--db",
        default=None,
        metavar="URL",
        help=f"database URL, e.g. sqlite:///var/api.sqlite (default: ${DB_ENV})",
    )


def _url(args: argparse.Namespace) -> str:
    url: str | None = args.db or os.environ.get(DB_ENV)
    if not url:
        raise ConfigError(f"no database given: pass --db URL or set {DB_ENV}", key="--db")
    return url


@contextmanager
def _session(args: argparse.Namespace) -> Iterator[Session]:
    """A session on an up-to-date database; database errors become one-sentence errors."""
    url = _url(args)
    try:
        upgrade(url)
        engine = make_engine(url)
    except (ArgumentError, NoSuchModuleError) as exc:
        raise ConfigError(
            "the database URL is not valid", key="--db", expected="e.g. sqlite:///var/api.sqlite"
        ) from exc
    except OperationalError as exc:
        raise SourceUnavailable(
            "the database cannot be reached; check --db and that the server runs",
            detail=str(exc.orig).strip().splitlines()[0] if exc.orig else None,
        ) from exc
    try:
        with make_sessionmaker(engine)() as s:
            yield s
    finally:
        engine.dispose()


def _checked(fn: Callable[[], T], key: str) -> T:
    try:
        return fn()
    except ValueError as exc:
        raise ConfigError(str(exc), key=key) from exc


def _import_site(args: argparse.Namespace) -> int:
    model = load_site(args.site)
    with _session(args) as s:
        report = _checked(lambda: import_site(s, model), "site")
        s.commit()
    where = f"{model.enterprise}/{model.site}"
    if not (report.created or report.updated or report.deleted):
        print(f"{where}: unchanged ({report.unchanged} rows)")
        return 0
    print(
        f"{where}: {len(report.created)} created, {len(report.updated)} updated, "
        f"{len(report.deleted)} deleted, {report.unchanged} unchanged"
    )
    for label, names in (
        ("created", report.created),
        ("updated", report.updated),
        ("deleted", report.deleted),
    ):
        for n in names:
            print(f"  {label} {n}")
    return 0


def _commission_config(args: argparse.Namespace) -> int:
    from analytics.commission_config import load_commission_config
    from api.commission.service import store_validated_config

    cfg = load_commission_config(args.config)  # a ConfigError names the file and the key
    with _session(args) as s:
        rev, created = store_validated_config(s, cfg, author=args.author, reason=args.reason)
    if created:
        print(f"commission configuration revision {rev.revision} stored ({cfg.version})")
    else:
        print(f"commission configuration unchanged: revision {rev.revision} is the same document")
    return 0


def _expiry(args: argparse.Namespace) -> datetime | None:
    if args.days is not None:
        if args.days <= 0:
            raise ConfigError("--days must be more than 0", key="--days")
        return datetime.now(UTC) + timedelta(days=args.days)
    if args.expires is None:
        return None
    try:
        when = datetime.fromisoformat(args.expires)
    except ValueError as exc:
        raise ConfigError(
            f"--expires {args.expires!r} is not an ISO 8601 date or time",
            key="--expires",
            expected="e.g. 2027-01-31 or 2027-01-31T18:00+08:00",
        ) from exc
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    if when <= datetime.now(UTC):
        raise ConfigError(f"--expires {args.expires!r} is in the past", key="--expires")
    return when


def _describe(t: TokenInfo) -> str:
    scope = f"site {t.site}" if t.site else "every site"
    return f"token {t.id} {t.name!r} ({t.role}, {scope})"


def _token_create(args: argparse.Namespace) -> int:
    expires = _expiry(args)
    with _session(args) as s:
        secret, info = _checked(
            lambda: create_token(
                s, name=args.name, role=args.role, site=args.site, expires_at=expires
            ),
            "--site"
            if args.site is not None or args.role in ("engineer", "factory_admin")
            else "--name",
        )
        s.commit()
    until = f", expires {info.expires_at.isoformat()}" if info.expires_at else ""
    print(f"created {_describe(info)}{until}", file=sys.stderr)
    print("the secret is shown only now; store it safely:", file=sys.stderr)
    print(secret)
    return 0


def _iso(d: datetime | None) -> str:
    return d.isoformat(timespec="seconds") if d else "-"


def _token_list(args: argparse.Namespace) -> int:
    with _session(args) as s:
        tokens = list_tokens(s)
    if args.json:
        for t in tokens:
            print(
                json.dumps(
                    {
                        "id": t.id,
                        "name": t.name,
                        "role": t.role,
                        "site": t.site,
                        "expires_at": _iso(t.expires_at) if t.expires_at else None,
                        "last_used_at": _iso(t.last_used_at) if t.last_used_at else None,
                        "revoked": t.revoked,
                        "created_at": _iso(t.created_at),
                    },
                    ensure_ascii=False,
                )
            )
        return 0
    head = ("ID", "NAME", "ROLE", "SITE", "CREATED", "EXPIRES", "LAST USED", "STATUS")
    rows = [
        (
            str(t.id),
            t.name,
            t.role,
            t.site or "*",
            _iso(t.created_at),
            _iso(t.expires_at),
            _iso(t.last_used_at),
            "revoked" if t.revoked else _status(t),
        )
        for t in tokens
    ]
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    for r in [head, *rows]:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    return 0


def _status(t: TokenInfo) -> str:
    if t.expires_at is not None and t.expires_at <= datetime.now(UTC):
        return "expired"
    return "active"


def _token_revoke(args: argparse.Namespace) -> int:
    with _session(args) as s:
        done = revoke_token(s, args.id)
        s.commit()
        known = done or any(t.id == args.id for t in list_tokens(s))
    if not known:
        raise ConfigError(f"there is no token {args.id}; see `zhizao api token list`", key="id")
    print(f"token {args.id} revoked" if done else f"token {args.id} was already revoked")
    return 0
