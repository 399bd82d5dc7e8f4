"""Who may see what: bearer tokens, roles and factory scope, enforced in one place.

Every route except ``/healthz``, ``/readyz`` and ``/metrics`` depends on ``current_principal``
(a valid, unexpired, unrevoked token). Routes under ``/sites/{site}`` depend on ``site_access``
with their *policy*; ``authorize``, which it calls (and the portal's pages too), decides
whether the token's role and factory scope allow the request. A site outside the token's scope
answers exactly like a site that does not exist (404, same body, same database work), so ids
cannot be probed.

| policy      | engineer | factory_admin | commission | admin |
|-------------|----------|---------------|------------|-------|
| aggregate   | own site | own site      | every site | all   |
| telemetry   | own site | own site      | 403        | all   |
| assign      | own site | own site      | 403        | all   |
| manage      | 403      | own site      | 403        | all   |
| report      | 403      | own site      | 403        | all   |
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Literal

from fastapi import Depends, HTTPException, Path, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.state import AppState, get_state
from api.tokens import Role, TokenInfo, verify_token
from zhizao.logs import token_fingerprint as token_fingerprint  # re-exported
from zhizao.site import SiteModel

__all__ = [
    "POLICIES",
    "Policy",
    "Principal",
    "PrincipalDep",
    "SiteContext",
    "authorize",
    "current_principal",
    "not_found",
    "site_access",
]

Policy = Literal["aggregate", "telemetry", "assign", "manage", "report"]
POLICIES: dict[Policy, frozenset[Role]] = {
    "aggregate": frozenset({"engineer", "factory_admin", "commission", "admin"}),
    "telemetry": frozenset({"engineer", "factory_admin", "admin"}),
    "assign": frozenset({"engineer", "factory_admin", "admin"}),
    "manage": frozenset({"factory_admin", "admin"}),
    # factory reports: written by the factory's admin (reads use "aggregate")
    "report": frozenset({"factory_admin", "admin"}),
}
# roles whose tokens see every factory (the others are scoped to one site)
UNSCOPED: frozenset[Role] = frozenset({"commission", "admin"})

TOKEN_CACHE_S = 5.0
_TOKEN_CACHE: dict[str, tuple[TokenInfo, float]] = {}

_bearer = HTTPBearer(auto_error=False, description="an API token: `Authorization: Bearer zz_...`")


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller: a verified token."""

    token: TokenInfo

    @property
    def role(self) -> Role:
        return self.token.role

    @property
    def name(self) -> str:
        return self.token.name

    def sees(self, site: str) -> bool:
        return self.token.role in UNSCOPED or self.token.site == site


def _unauthorized(state: AppState, reason: str, detail: str) -> HTTPException:
    state.metrics.auth_failures.labels(reason=reason).inc()
    return HTTPException(401, detail=detail, headers={"WWW-Authenticate": "Bearer"})


def current_principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """The verified token of the request, or 401 (counted by reason, the secret never logged)."""
    state = get_state(request)
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise _unauthorized(
            state, "missing", "an API token is required: Authorization: Bearer <token>"
        )
    secret = credentials.credentials
    with state.session() as session:
        info = verify_token(session, secret)
        session.commit()  # last_used_at
    if info is None:
        # unknown, revoked and expired tokens look the same to the caller; the metric tells them
        # apart only by a one-way look-up the operator can correlate with `zhizao api token list`
        raise _unauthorized(state, "invalid", "the API token is unknown, revoked or expired")
    return Principal(info)


PrincipalDep = Annotated[Principal, Depends(current_principal)]


def not_found(kind: str, key: str) -> HTTPException:
    return HTTPException(404, detail=f"{kind} {key!r} not found")


@dataclass(frozen=True, slots=True)
class SiteContext:
    """A site the caller may use under the route's policy."""

    principal: Principal
    model: SiteModel

    @property
    def site(self) -> str:
        return self.model.site


async def authorize(state: AppState, principal: Principal, site: str, policy: Policy) -> SiteModel:
    """The model of ``site`` when ``principal`` may use it under ``policy`` (the module table);
    404 for a site that is missing or out of scope (the same answer), 403 for a role the policy
    excludes. The API's routes (``site_access``) and the portal's pages both decide here."""
    # a site in scope may come from the cache; any other is looked up in the database, so a
    # foreign site and a missing one cost the same and answer the same
    visible = principal.sees(site)
    model = state.cached_site_model(site) if visible else None
    if model is None:
        model = await asyncio.to_thread(state.site_model, site, use_cache=visible)
    if model is None or not visible:
        state.metrics.scope_denials.labels(kind="site").inc()
        raise not_found("site", site)
    if principal.role not in POLICIES[policy]:
        state.metrics.auth_failures.labels(reason="role").inc()
        raise HTTPException(
            403, detail=f"role {principal.role!r} may not use this route ({policy})"
        )
    return model


def site_access(policy: Policy) -> Callable[..., Awaitable[SiteContext]]:
    """The dependency for routes under ``/sites/{site}`` with ``policy`` (see the module table)."""
    if policy not in POLICIES:
        raise ValueError(f"unknown policy {policy!r}")

    async def dependency(
        request: Request,
        principal: PrincipalDep,
        site: Annotated[str, Path(description="site (factory) id", max_length=64)],
    ) -> SiteContext:
        model = await authorize(get_state(request), principal, site, policy)
        return SiteContext(principal, model)

    return dependency


# routes that are not about one site (the commission's cohort view): policy -> roles
CrossSitePolicy = Literal["commission"]
CROSS_SITE_POLICIES: dict[CrossSitePolicy, frozenset[Role]] = {
    "commission": frozenset({"commission", "admin"}),
}


def cross_site_access(policy: CrossSitePolicy) -> Callable[..., Principal]:
    """The dependency for routes over many sites (aggregates only; no raw telemetry): the
    token's role must be in ``CROSS_SITE_POLICIES[policy]``, else 403."""
    allowed = CROSS_SITE_POLICIES[policy]

    def dependency(request: Request, principal: PrincipalDep) -> Principal:
        if principal.role not in allowed:
            get_state(request).metrics.auth_failures.labels(reason="role").inc()
            raise HTTPException(
                403, detail=f"role {principal.role!r} may not use this route ({policy})"
            )
        return principal

    return dependency
