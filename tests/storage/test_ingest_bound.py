"""The ingestor's memory bound, step by step on the event loop: every message it admitted is counted as held at
every point another arrival could be checked against the bound, so a flood cannot push it over."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from core.mqtt import Message
from storage import DuckDBStore, Ingestor
from testkit.mqtt import ingest_settings, make_batch, register
from wire import encode_batch, samples_topic

MA, GA = "m-0000aa", "g-000000a1"
BOUND = 5


async def test_every_admitted_message_counts_as_held_at_every_loop_step(tmp_path: Path) -> None:
    # nothing is flushed (no size or deadline reached), so nothing is released: held = admitted, always
    settings = ingest_settings(
        1,
        tmp_path,
        max_inflight_messages=BOUND,
        max_pending_messages=BOUND,
        batch_max_delay_s=60,
        batch_max_samples=1_000_000,
    )
    ing = Ingestor(settings, DuckDBStore(":memory:"), lambda: register(MA))
    consumer = asyncio.create_task(ing._consume())
    await asyncio.sleep(0)  # the consumer now waits on the empty queue
    payload = encode_batch(make_batch(MA, GA, 3))
    try:
        for i in range(3 * BOUND):
            ing._arrived(Message(samples_topic(MA, GA), payload, mid=i + 1, qos=1, generation=0))
            admitted = min(i + 1, BOUND)
            # the steps in which the consumer takes the message off the queue and checks it in a thread
            for step in range(4):
                assert ing.pending_messages == admitted, (
                    f"after arrival {i + 1}, loop step {step}: {ing.pending_messages} counted as held, "
                    f"{admitted} admitted"
                )
                await asyncio.sleep(0)
        for _ in range(200):  # let the checks in worker threads finish: the count must not change
            await asyncio.sleep(0.005)
            assert ing.pending_messages == BOUND
        assert ing._shed == 2 * BOUND
    finally:
        consumer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await consumer
