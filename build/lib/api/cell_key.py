"""The trustee's secret for the keyed noise on benchmark figures: made once, kept in a 0600 file."""

from __future__ import annotations

import os
import secrets
import threading
from pathlib import Path

from .errors import ApiError

KEY_BYTES = 32


def load_or_create(path: Path) -> bytes:
    """The key in ``path`` (hex), made and written with mode 0600 if the file does not exist yet."""
    try:
        text = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        key = secrets.token_bytes(KEY_BYTES)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as fh:
            fh.write(key.hex() + "\n")
        return key
    except (OSError, UnicodeDecodeError) as exc:
        raise ApiError(
            f"{path}: cannot read the benchmark cell key ({exc}); restore it from the store's backup"
        ) from exc
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = b""
    if len(key) < 16:
        raise ApiError(f"{path}: expected at least 16 bytes of hex (the benchmark cell key); restore it from backup")
    return key


class CellKey:
    """The key of one file, read (or made) on first use: an app that never releases a cell writes no key."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._key: bytes | None = None
        self._lock = threading.Lock()

    def __call__(self) -> bytes:
        with self._lock:
            if self._key is None:
                self._key = load_or_create(self.path)
            return self._key
