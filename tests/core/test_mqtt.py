"""The one MQTT bridge (core.mqtt) against a real Mosquitto: connection state, resubscribing, and
acknowledgements tied to the connection a message arrived on."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from core.mqtt import Message, MqttClient, MqttEndpoint
from testkit.servers import MosquittoServer
from testkit.waiting import wait_until

pytestmark = pytest.mark.integration


def test_the_password_never_shows() -> None:
    ep = MqttEndpoint(name="uplink", host="127.0.0.1", port=1883, client_id="c", username="u", password="s3cr3t-pw")
    assert "s3cr3t-pw" not in repr(ep)
    assert "s3cr3t-pw" not in repr(MqttClient(ep))
    assert "s3cr3t-pw" not in repr(ep.replace(client_id="other"))


async def test_acks_are_tied_to_the_connection_and_subscriptions_come_back(mosquitto: MosquittoServer) -> None:
    arrived: asyncio.Queue[Message] = asyncio.Queue()
    states: list[bool] = []
    threads: set[int] = set()

    reconnected = asyncio.Event()

    def on_message(m: Message) -> None:
        threads.add(threading.get_ident())
        arrived.put_nowait(m)

    def on_connection(up: bool) -> None:
        threads.add(threading.get_ident())
        states.append(up)
        if up and len(states) > 1:
            reconnected.set()

    endpoint = MqttEndpoint(
        name="test",
        host="127.0.0.1",
        port=mosquitto.port,
        client_id="core-mqtt-test",
        clean_session=False,
        manual_ack=True,
        backoff_min_s=0.05,
        backoff_max_s=0.2,
    )
    consumer = MqttClient(endpoint, subscriptions=[("t/#", 1)], on_message=on_message, on_connection=on_connection)
    publisher = MqttClient(endpoint.replace(client_id="core-mqtt-pub", clean_session=True, manual_ack=False))
    async with consumer, publisher:
        async with asyncio.timeout(10):
            await consumer.subscribed.wait()
            await publisher.connected.wait()
        assert states == [True]
        first_generation = consumer.generation
        publisher.publish("t/1", b"hello", qos=1)
        async with asyncio.timeout(10):
            message = await arrived.get()
        assert threads == {threading.get_ident()}, "a hook ran outside the event loop"
        assert (message.topic, message.payload, message.generation) == ("t/1", b"hello", first_generation)

        # The connection drops before the message is acknowledged: the client reconnects by itself,
        # subscribes again, and the broker delivers the message again on the new connection.
        consumer.client.disconnect()
        async with asyncio.timeout(10):
            await reconnected.wait()
            again = await arrived.get()
        assert states == [True, False, True]
        assert consumer.generation != first_generation
        assert not consumer.ack(message), "an ack from the old connection must be ignored"
        assert (again.payload, again.generation) == (b"hello", consumer.generation)
        assert consumer.ack(again)
        assert consumer.reconnects == 1


async def test_only_the_bridge_thread_writes_the_socket_and_a_stop_is_quiet(
    mosquitto: MosquittoServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Publishes queued from the event loop are written by the bridge's own thread (two writers could
    interleave a partly sent packet), and a stop logs nothing at warning or above."""
    acked: set[int] = set()
    endpoint = MqttEndpoint(name="test", host="127.0.0.1", port=mosquitto.port, client_id="core-mqtt-writer")
    publisher = MqttClient(endpoint, on_publish=lambda mid, rc: acked.add(mid))
    writers: set[str] = set()
    send = publisher.client._sock_send

    def recording_send(buf: bytes) -> int:
        writers.add(threading.current_thread().name)
        return send(buf)

    publisher.client._sock_send = recording_send  # type: ignore[method-assign]
    with caplog.at_level("DEBUG", logger="core.mqtt"):
        async with publisher:
            async with asyncio.timeout(10):
                await publisher.connected.wait()
            mids = {publisher.publish(f"t/{i}", b"x" * 100_000, qos=1) for i in range(20)}
            await wait_until(lambda: mids <= acked, 10, "every PUBACK")
    assert writers == {"mqtt-test"}, writers
    assert [r.getMessage() for r in caplog.records if r.levelno >= 30] == []


async def test_a_packet_queued_from_the_event_loop_is_sent_at_once(mosquitto: MosquittoServer) -> None:
    """The bridge's loop is woken for a queued packet instead of finding it at its next poll (1 s): five
    publish-and-acknowledge round trips one after the other, and the stop, take a fraction of that."""
    acked: set[int] = set()
    endpoint = MqttEndpoint(name="test", host="127.0.0.1", port=mosquitto.port, client_id="core-mqtt-prompt")
    publisher = MqttClient(endpoint, on_publish=lambda mid, rc: acked.add(mid))
    async with publisher:
        async with asyncio.timeout(10):
            await publisher.connected.wait()
        started = time.monotonic()
        for i in range(5):
            mid = publisher.publish(f"t/{i}", b"x", qos=1)
            await wait_until(lambda: mid in acked, 10, "the PUBACK")  # noqa: B023
        round_trips = time.monotonic() - started
        started = time.monotonic()
    stop = time.monotonic() - started
    assert round_trips < 2.5, f"five round trips took {round_trips:.2f} s: the loop was not woken"
    assert stop < 0.9, f"the stop took {stop:.2f} s: the DISCONNECT waited for the loop's poll"
