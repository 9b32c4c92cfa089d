"""FastAPI dependencies: the shared context and the caller's identity and role."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from core.consent import RESEARCH, Category

from ..audit import set_principal
from ..errors import Forbidden, Unauthorized
from ..tokens import Principal
from .context import AppContext

_bearer = HTTPBearer(auto_error=False, description="An API token (`metalldaten tokens create`)")


def get_context(request: Request) -> AppContext:
    ctx = request.app.state.ctx
    assert isinstance(ctx, AppContext)
    return ctx


ContextDep = Annotated[AppContext, Depends(get_context)]


def get_principal(
    request: Request,
    ctx: ContextDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    if credentials is None or credentials.scheme.lower() != "bearer" or not credentials.credentials:
        ctx.metrics.auth_failures.inc()
        raise Unauthorized("send an API token as 'Authorization: Bearer <token>'")
    principal = ctx.tokens.authenticate(credentials.credentials)
    if principal is None:
        ctx.metrics.auth_failures.inc()
        raise Unauthorized("the token is unknown or revoked")
    set_principal(request, principal)
    return principal


PrincipalDep = Annotated[Principal, Depends(get_principal)]


def require_roles(*roles: str) -> Callable[[Principal], Principal]:
    def check(principal: PrincipalDep) -> Principal:
        if principal.role not in roles:
            raise Forbidden(f"this needs a token with role {' or '.join(roles)}; yours is {principal.role}")
        return principal

    return check


AdminDep = Annotated[Principal, Depends(require_roles("admin"))]
ReaderDep = Annotated[Principal, Depends(require_roles("member", "analyst"))]
MemberDep = Annotated[Principal, Depends(require_roles("member"))]


def readable_members(
    ctx: AppContext, principal: Principal, requested: list[str] | None, category: Category
) -> tuple[str, ...] | None:
    """The member filter of a query of ``category`` data: a member token its own pseudonym only; an analyst
    token the members (of those it asks for) that may send and consent to ``category`` for the token's
    purpose now. Default deny: a member not in the register, suspended, removed or not consenting is left out."""
    if principal.role != "analyst":
        return visible_members(principal, requested)
    consenting = ctx.register_provider().consenting(category, principal.purpose or RESEARCH, ctx.clock())
    if not requested:
        return consenting
    allowed = set(consenting)
    return tuple(m for m in dict.fromkeys(requested) if m in allowed)


def visible_members(principal: Principal, requested: list[str] | None) -> tuple[str, ...] | None:
    """The member filter a query may use: members only ever their own pseudonym; analysts what they ask."""
    if principal.role == "member":
        assert principal.member is not None
        if requested and any(m != principal.member for m in requested):
            raise Forbidden("a member token reads only its own member's data")
        return (principal.member,)
    return tuple(requested) if requested else None
