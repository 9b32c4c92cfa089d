"""An HTTP client in its own process, for a benchmark that times requests to a server running in its own process.

A client in the server's process shares the server's interpreter lock. There, reading and parsing a large answer
(the all-assets KPIs: 55,000 rows of JSON, ~0.4 s of ``json.loads``) stalled the server's own threads between
requests: in ``live_queries`` the client's parsing held the lock for two fifths of the run, the embedded store's
feeder fell behind by seconds and the API waited for the lock. A member's or data scientist's client is another
process, so the benchmark's is too.

:class:`RemoteClient` starts ``python remote_client.py BASE_URL`` and sends it one request per line (path and
bearer token). Each answer is the time the request took (sent to the last byte read, as before) and a summary
of the JSON body: its ``as_of``, its number of ``data`` rows and of distinct assets among them.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any


class RemoteClient:
    """A client process for ``base`` (``http://127.0.0.1:PORT``); one request at a time."""

    def __init__(self, base: str) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), base],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
        )

    def timed(self, path: str, token: str) -> tuple[float, dict[str, Any]]:
        """GET ``path`` with ``token``: the seconds it took and the summary of its answer; raise on a failure."""
        stdin, stdout = self._proc.stdin, self._proc.stdout
        assert stdin is not None and stdout is not None
        stdin.write(json.dumps({"path": path, "token": token}) + "\n")
        stdin.flush()
        line = stdout.readline()
        if not line:
            raise RuntimeError(f"the client process ended (exit code {self._proc.poll()})")
        reply: dict[str, Any] = json.loads(line)
        if "error" in reply:
            raise RuntimeError(f"GET {path}: {reply['error']}")
        return float(reply["elapsed_s"]), reply

    def close(self) -> None:
        if self._proc.stdin is not None:
            self._proc.stdin.close()
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()

    def __enter__(self) -> RemoteClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _summary(body: object) -> dict[str, Any]:
    if not isinstance(body, dict):
        return {"as_of": None, "rows": 0, "assets": 0}
    data = body.get("data")
    rows = data if isinstance(data, list) else []
    assets = {r.get("asset") for r in rows if isinstance(r, dict)}
    return {"as_of": body.get("as_of"), "rows": len(rows), "assets": len(assets - {None})}


def _serve(base: str) -> None:
    import httpx

    with httpx.Client(base_url=base, timeout=120) as client:
        for line in sys.stdin:
            request = json.loads(line)
            try:
                t = time.perf_counter()
                r = client.get(request["path"], headers={"Authorization": f"Bearer {request['token']}"})
                elapsed = time.perf_counter() - t
                r.raise_for_status()
                reply = {"elapsed_s": elapsed, **_summary(r.json())}
            except Exception as exc:  # reported to the benchmark, which stops
                reply = {"error": f"{type(exc).__name__}: {exc}"}
            sys.stdout.write(json.dumps(reply) + "\n")
            sys.stdout.flush()


if __name__ == "__main__":
    _serve(sys.argv[1])
