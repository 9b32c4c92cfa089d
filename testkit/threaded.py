"""Run an asyncio server object (an asyncua machine server) in its own thread and event loop.

A test whose own loop is busy (waiting, decoding what arrived) then cannot delay the server, and a
server that the test drives from its loop still answers clients at its own pace::

    with ServerThread() as t:
        server = HistorisedMachineServer(free_port(), {"M": ["Power"]})
        t.run(server.start())
        await t.call(server.write("M", "Power", 1.0))
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class ServerThread:
    def __init__(self, name: str = "opcua-server") -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=name, daemon=True)

    def __enter__(self) -> ServerThread:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        async def cancel_rest() -> None:
            rest = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in rest:
                t.cancel()
            await asyncio.gather(*rest, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(cancel_rest(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        """Run ``coro`` in the server's loop and wait for its result (from a thread that is no event loop)."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    async def call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` in the server's loop and await its result from another loop."""
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self._loop))
