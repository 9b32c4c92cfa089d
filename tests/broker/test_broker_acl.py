"""The generated broker configuration on a real Mosquitto: TLS, passwords, the ACL and the ingestor behind it."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from core.register import load_register
from storage import DuckDBStore, Ingestor, SeriesQuery
from testkit.mqtt import make_batch, wait_until
from tests.broker.brokerkit import GW, Client, Hub, ingestor_settings
from tests.broker.clikit import env_password, invoke
from tests.storage.test_ingestor import running
from wire import encode_batch, samples_topic

pytestmark = pytest.mark.integration


def test_a_member_cannot_publish_under_another_members_topic(hub: Hub) -> None:
    (a, pa), (b, pb) = sorted(hub.members.items())
    watcher = Client(hub, "ingestor", hub.ingestor_password)
    member_a = Client(hub, a, pa)
    member_b = Client(hub, b, pb)
    try:
        assert watcher.ok and member_a.ok and member_b.ok
        watcher.subscribe("mdh/v1/+/+/samples")
        watcher.subscribe("mdh/v1/+/+/status")
        assert member_a.publish(f"mdh/v1/{b}/{GW}/samples", b"forged by A") == 0x87  # not authorised
        assert member_a.publish(f"mdh/v1/{b}/{GW}/status", b"forged by A") == 0x87
        assert member_a.publish(f"mdh/v1/{a}/{GW}/samples", b"A's own") == 0
        assert member_b.publish(f"mdh/v1/{b}/{GW}/samples", b"B's own") == 0
        assert watcher.publish(f"mdh/v1/{a}/{GW}/samples", b"ingestor writes") == 0x87  # read-only
        # The broker routes each client's packets in order: once the own messages, sent after the forged ones,
        # have arrived, a forged message that got through would have arrived before them.
        deadline = time.monotonic() + 3
        while len(watcher.received) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert sorted(watcher.received) == sorted(
            [(f"mdh/v1/{a}/{GW}/samples", b"A's own"), (f"mdh/v1/{b}/{GW}/samples", b"B's own")]
        )
        member_a.subscribe(f"mdh/v1/{b}/#")
        assert member_b.publish(f"mdh/v1/{b}/{GW}/samples", b"B again") == 0
        deadline = time.monotonic() + 3
        while len(watcher.received) < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert watcher.received[-1] == (f"mdh/v1/{b}/{GW}/samples", b"B again")
        # B's message was routed before A's next packet is read: A's acknowledged publish comes back after any
        # copy of "B again" the broker had queued for A.
        assert member_a.publish(f"mdh/v1/{a}/{GW}/samples", b"A's sentinel") == 0
        assert member_a.received == [], "a member must not read another member's data"
    finally:
        for c in (watcher, member_a, member_b):
            c.close()


def test_logins_are_checked_and_removal_and_rotation_take_effect_on_reload(hub: Hub) -> None:
    (a, pa), (b, pb) = sorted(hub.members.items())
    assert not Client(hub, a, "wrong-password").ok
    assert not Client(hub, None, None).ok, "anonymous clients must be refused"
    invoke(
        "remove-member",
        "--register",
        hub.register,
        "--passwd",
        hub.passwd,
        "--audit-log",
        hub.register.with_name("audit.log"),
        a,
    )
    new_b = env_password(invoke("rotate-password", "--passwd", hub.passwd, b))

    def refused(user: str, password: str) -> bool:
        client = Client(hub, user, password)
        client.close()
        return not client.ok

    hub.reload(lambda: refused(a, pa))
    removed, old_b, rotated = Client(hub, a, pa), Client(hub, b, pb), Client(hub, b, new_b)
    try:
        assert not removed.ok and not old_b.ok and rotated.ok
    finally:
        for c in (removed, old_b, rotated):
            c.close()


def test_client_certificate_login_is_bound_to_the_pseudonym(hub: Hub) -> None:
    (a, _), (b, _) = sorted(hub.members.items())
    kit = hub.kits / a
    member_a = Client(hub, None, None, port=hub.mtls_port, cert=(kit / f"{a}.pem", kit / f"{a}.key"))
    try:
        assert member_a.ok
        assert member_a.publish(f"mdh/v1/{a}/{GW}/samples", b"own") == 0x10  # accepted; no subscriber
        assert member_a.publish(f"mdh/v1/{b}/{GW}/samples", b"forged") == 0x87
    finally:
        member_a.close()
    assert not Client(hub, None, None, port=hub.mtls_port).ok, "no certificate, no login on the mutual-TLS listener"


async def test_ingestor_over_tls_stores_own_data_and_never_sees_forged_data(hub: Hub, tmp_path: Path) -> None:
    (a, pa), (b, _) = sorted(hub.members.items())
    store = DuckDBStore(tmp_path / "hub.duckdb")
    settings = ingestor_settings(hub, tmp_path, "ing-tls")
    ingestor = Ingestor(settings, store, lambda: load_register(hub.register))
    member_a = Client(hub, a, pa)
    try:
        async with running(ingestor):
            own, forged = make_batch(a, GW, 30), make_batch(b, GW, 7)
            assert member_a.publish(samples_topic(b, GW), encode_batch(forged)) == 0x87
            assert member_a.publish(samples_topic(a, GW), encode_batch(own)) == 0
            await wait_until(lambda: ingestor.stored_samples >= 30, what="A's batch stored")
            # a second own batch, published after the forged one, stored: the forged one would have been first
            assert member_a.publish(samples_topic(a, GW), encode_batch(make_batch(a, GW, 5))) == 0
            await wait_until(lambda: ingestor.stored_samples >= 35, what="A's sentinel batch stored")
        assert store.query_series(SeriesQuery())["member"].unique().to_list() == [a]
        assert store.count() == 35 and ingestor.dead_lettered == 0
    finally:
        member_a.close()
        store.close()
