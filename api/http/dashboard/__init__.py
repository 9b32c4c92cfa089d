"""The member dashboard: static HTML, CSS and JS shipped in this package and served at ``/``.

No external resources: the page draws its charts as inline SVG with a small
hand-written script, and talks only to this API.
"""

from __future__ import annotations

from importlib import resources

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, Response

from ...errors import NotFound
from ..problems import problem_responses

router = APIRouter(tags=["dashboard"])

_ASSETS = {"dashboard.js": "text/javascript; charset=utf-8", "dashboard.css": "text/css; charset=utf-8"}
_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


def _read(name: str) -> bytes:
    return resources.files(__package__).joinpath(name).read_bytes()


@router.get("/", response_class=HTMLResponse, summary="The member dashboard (HTML page)")
def index() -> HTMLResponse:
    return HTMLResponse(_read("index.html"), headers={"Content-Security-Policy": _CSP, "Cache-Control": "no-cache"})


@router.get(
    "/assets/{name}",
    summary="Script and style sheet of the dashboard",
    response_class=Response,
    responses={
        200: {
            "content": {"text/javascript": {"schema": {"type": "string"}}, "text/css": {"schema": {"type": "string"}}}
        },
        **problem_responses(404),
    },
)
def asset(name: str) -> Response:
    media = _ASSETS.get(name)
    if media is None:
        raise NotFound(f"no asset {name}")
    return Response(_read(name), media_type=media, headers={"Cache-Control": "no-cache"})
