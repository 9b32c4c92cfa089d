"""Opaque series cursors: the sort key of the last row of a page, so the next page starts after it."""

from __future__ import annotations

import base64
import json

from ..errors import InvalidRequest

_VERSION = 1


def encode_cursor(key: tuple[int, str, str, str]) -> str:
    raw = json.dumps([_VERSION, *key], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[int, str, str, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        version, ts, member, asset, signal = json.loads(raw)
    except (ValueError, TypeError) as exc:
        raise InvalidRequest("cursor: not a cursor returned by this API") from exc
    if version != _VERSION or not isinstance(ts, int) or not all(isinstance(s, str) for s in (member, asset, signal)):
        raise InvalidRequest("cursor: not a cursor returned by this API")
    return ts, member, asset, signal
