"""Pure core of the gateway: pseudonyms, Sparkplug decoding, configuration errors, key ids (the normalise step:
test_normalise)."""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.configfile import ConfigError
from gateway.config import load_gateway_settings
from gateway.errors import KeyFileError
from gateway.pseudonymise import Journal, MemberKey, Pseudonymiser, generate_key, load_key, pseudonym, reveal
from gateway.sources.mqtt.sparkplug import AliasTable, SparkplugError, decode_payload
from wire import Sample, decode_batch, encode_batch
from wire.model import PSEUDONYM_RE, SCHEMA_VERSION, Batch

from .sparkplug_encode import encode_payload

EXAMPLE = Path(__file__).resolve().parents[2] / "gateway" / "gateway.example.toml"
NOW = 1_790_000_000 * 10**9
KEY = MemberKey(key_id="k1", secret=bytes(range(32)))


def test_keygen_writes_a_private_file_and_refuses_to_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "member.key"
    key = generate_key(path, key_id="k-2026")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_key(path) == key
    assert "secret" not in repr(key) and key.secret.hex() not in repr(key)
    with pytest.raises(KeyFileError, match="refusing"):
        generate_key(path)
    os.chmod(path, 0o644)
    with pytest.raises(KeyFileError, match="chmod 600"):
        load_key(path)


def test_pseudonyms_are_keyed_prefixed_and_revealable(tmp_path: Path) -> None:
    p = pseudonym(KEY, "a", "DMU50-SN-104711")
    assert PSEUDONYM_RE.match(p) and p.startswith("a-") and len(p) == 18
    assert pseudonym(KEY, "a", "DMU50-SN-104711") == p
    assert pseudonym(KEY, "g", "DMU50-SN-104711") != p  # the kind is part of the input
    other = MemberKey(key_id="k2", secret=bytes(32))
    assert pseudonym(other, "a", "DMU50-SN-104711") != p
    journal = Journal(tmp_path / "journal.jsonl")
    ps = Pseudonymiser(KEY, journal=journal)
    seen = ps.asset("found-at-runtime")
    assert stat.S_IMODE((tmp_path / "journal.jsonl").stat().st_mode) == 0o600
    assert reveal(KEY, seen, [("a", "x"), *Journal(tmp_path / "journal.jsonl").read()]) == [("a", "found-at-runtime")]
    assert reveal(other, seen, journal.read()) == []
    assert reveal(KEY, "zz", journal.read()) == []


@given(st.text(min_size=1, max_size=80), st.sampled_from(["a", "g", "p"]), st.integers(8, 32))
def test_pseudonym_never_contains_the_identifier(identifier: str, kind: str, length: int) -> None:
    p = pseudonym(KEY, kind, identifier, length=length)  # type: ignore[arg-type]
    assert PSEUDONYM_RE.match(p)
    assert len(p) == length + 2
    assert reveal(KEY, p, [("a", "other"), (kind, identifier)]) == [(kind, identifier)]


def test_sparkplug_birth_aliases_and_data() -> None:
    birth = encode_payload(
        timestamp=NOW // 10**6, metrics=[("Power", 1, 9, 1500.0), ("Parts", 2, 4, -3), ("State", 3, 12, "run")]
    )
    data = encode_payload(timestamp=NOW // 10**6 + 1000, metrics=[(None, 1, 9, 1600.0), (None, 2, 4, 7)])
    aliases = AliasTable()
    b = decode_payload(birth)
    aliases.learn("g", "node1", b.metrics, reset=True)
    assert [(m.name, m.value) for m in b.metrics] == [("Power", 1500.0), ("Parts", -3), ("State", "run")]
    d = decode_payload(data)
    assert [(aliases.name("g", "node1", m), m.value) for m in d.metrics] == [("Power", 1600.0), ("Parts", 7)]
    assert d.timestamp == NOW // 10**6 + 1000
    with pytest.raises(SparkplugError):
        decode_payload(b"\x12\xff\x01")


@given(st.binary(max_size=200))
def test_sparkplug_decoder_never_crashes(payload: bytes) -> None:
    with contextlib.suppress(SparkplugError):
        decode_payload(payload)


def test_example_configuration_loads_and_env_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    s = load_gateway_settings(EXAMPLE)
    assert s.identity.member == "m-7f3a9c"
    assert s.identity.key_file == EXAMPLE.parent / "member.key"
    assert s.uplink.qos == 1 and s.buffer.flush_interval_s < 1
    assert s.asset_classes()["DMU50-SN-104711"] == "cnc_milling"
    monkeypatch.setenv("MDH_GATEWAY__UPLINK__PASSWORD", "s3cret")
    monkeypatch.setenv("MDH_GATEWAY__UPLINK__HOST", "hub.test")
    s = load_gateway_settings(EXAMPLE)
    assert s.uplink.host == "hub.test"
    assert s.uplink.password is not None and s.uplink.password.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(s)


@pytest.mark.parametrize(
    ("replace", "key", "expected"),
    [
        ('member = "m-7f3a9c"', "identity.member", "member pseudonym"),
        ('canonical = "power_kw"', "policy.signals.Wirkleistung.canonical", "catalogue signal"),
        ('unit = "W"', "policy.signals.Wirkleistung", "cannot be converted"),
        ('overflow = "drop_oldest"', "buffer.overflow", "drop_oldest"),
        ("batch_size = 500", "opcua.0.batch_size", "less than or equal to 5000"),
    ],
)
def test_wrong_configuration_names_file_key_and_expectation(
    tmp_path: Path, replace: str, key: str, expected: str
) -> None:
    bad = {
        'member = "m-7f3a9c"': 'member = "ACME GmbH"',
        'canonical = "power_kw"': 'canonical = "power_watts"',
        'unit = "W"': 'unit = "PS"',
        'overflow = "drop_oldest"': 'overflow = "block"',
        "batch_size = 500": "batch_size = 50000",
    }[replace]
    text = EXAMPLE.read_text(encoding="utf-8")
    assert replace in text
    path = tmp_path / "gw.toml"
    path.write_text(text.replace(replace, bad, 1), encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_gateway_settings(path)
    message = str(info.value)
    assert str(path) in message and f"key '{key}" in message and expected in message


def test_key_ids_are_opaque_and_old_dated_ids_still_load(tmp_path: Path) -> None:
    import re
    from datetime import UTC, datetime

    from gateway.pseudonymise import new_key_id
    from wire.model import KEY_ID_RE

    ids = {generate_key(tmp_path / f"k{i}.key").key_id for i in range(5)}
    assert len(ids) == 5
    today = datetime.now(UTC).strftime("%Y%m%d")
    for key_id in ids:
        assert KEY_ID_RE.fullmatch(key_id) and re.fullmatch(r"k-[0-9a-f]{12}", key_id) and today not in key_id
    assert new_key_id() not in ids
    old = generate_key(tmp_path / "old.key", key_id="k20261201-a1b2c3")  # a key made before ids were opaque
    assert load_key(tmp_path / "old.key") == old
    sample = Sample(NOW, pseudonym(old, "a", "m1"), "press", "power_kw", 1.0, 0)
    for key_id in (old.key_id, next(iter(ids))):  # batches sealed with either kind of id decode alike
        batch = Batch(
            schema=SCHEMA_VERSION,
            batch_id="batch-0001",
            member="m-0a1b2c",
            gateway="g-0123456789abcdef",
            key_id=key_id,
            sent_ns=NOW,
            samples=[sample],
        )
        assert decode_batch(encode_batch(batch)).key_id == key_id
