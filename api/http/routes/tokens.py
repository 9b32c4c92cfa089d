"""``/v1/tokens``: admins make, list and revoke tokens (as ``metalldaten tokens`` does)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from ...audit import record_body, record_rows
from ...errors import InvalidRequest, NotFound
from ...tokens import TokenRecord
from ..deps import AdminDep, ContextDep
from ..problems import problem_responses
from ..schemas import MemberTokenCreate, TokenCreate, TokenCreated, TokenInfo

router = APIRouter(tags=["tokens"])


def _info(r: TokenRecord) -> TokenInfo:
    return TokenInfo(
        id=r.id, role=r.role, member=r.member, label=r.label, created=r.created, revoked=r.revoked, purpose=r.purpose
    )


@router.get("/v1/tokens", response_model=list[TokenInfo], responses=problem_responses(401, 403))
def list_tokens(request: Request, ctx: ContextDep, admin: AdminDep) -> list[TokenInfo]:
    records = ctx.tokens.records()
    record_rows(request, len(records))
    return [_info(r) for r in records]


@router.post("/v1/tokens", status_code=201, response_model=TokenCreated, responses=problem_responses(401, 403, 422))
def create_token(request: Request, body: TokenCreate, ctx: ContextDep, admin: AdminDep) -> TokenCreated:
    try:
        member = body.member if isinstance(body, MemberTokenCreate) else None
        purpose = None if isinstance(body, MemberTokenCreate) else body.purpose
        token, r = ctx.tokens.create(body.role, member=member, label=body.label, purpose=purpose)
    except ValueError as exc:
        raise InvalidRequest(str(exc)) from exc
    record_rows(request, 1)
    audited = {"role": body.role, "member": member, "label": body.label, "id": r.id}
    record_body(request, audited | ({"purpose": r.purpose} if r.purpose else {}))
    return TokenCreated(token=token, **_info(r).model_dump())


@router.delete(
    "/v1/tokens/{token_id}", status_code=204, response_class=Response, responses=problem_responses(401, 403, 404)
)
def revoke_token(request: Request, token_id: str, ctx: ContextDep, admin: AdminDep) -> Response:
    if ctx.tokens.revoke(token_id) is None:
        raise NotFound(f"no token {token_id}")
    record_rows(request, 1)
    return Response(status_code=204)
