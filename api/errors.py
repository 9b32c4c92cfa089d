"""Errors of the analytics API package.

::

    ApiError                 -- a request the API refuses; carries the HTTP status and a problem type
    ├── Unauthorized         -- no token, or a token that is unknown or revoked (401)
    ├── Forbidden            -- the token's role or member may not do this (403)
    │   └── BudgetExhausted  -- the analyst's differential-privacy budget would be exceeded (403)
    ├── NotFound             -- no such resource (404)
    ├── NotAcceptable        -- the Accept header names no format the API can produce (406)
    └── InvalidRequest       -- parameters that cannot be served (422)
    TokenFileError           -- the tokens file cannot be read or written (not an HTTP error)
"""

from __future__ import annotations

from core.errors import MdhError


class ApiError(MdhError):
    status = 500
    type_slug = "internal"
    title = "Internal error"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class Unauthorized(ApiError):
    status = 401
    type_slug = "unauthorized"
    title = "Missing or invalid token"


class Forbidden(ApiError):
    status = 403
    type_slug = "forbidden"
    title = "Not allowed for this token"


class BudgetExhausted(Forbidden):
    type_slug = "privacy-budget-exhausted"
    title = "Privacy budget exhausted"


class NotFound(ApiError):
    status = 404
    type_slug = "not-found"
    title = "Not found"


class NotAcceptable(ApiError):
    status = 406
    type_slug = "not-acceptable"
    title = "Not acceptable"


class InvalidRequest(ApiError):
    status = 422
    type_slug = "invalid-request"
    title = "Invalid request"


class TokenFileError(MdhError):
    """The tokens file is unreadable, malformed or cannot be written."""
