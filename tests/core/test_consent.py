"""Consent per category and purpose (pure): validity periods, withdrawal, the register's checks, the file form."""

from __future__ import annotations

import tomllib
from datetime import UTC, datetime
from pathlib import Path

import pytest

from core.configfile import ConfigError
from core.consent import Permission, odrl_policy, permits, withdrawn
from core.register import Member, Register, dump_register, load_register, with_member_changed

JAN, MAR, JUN = (datetime(2026, m, 1, tzinfo=UTC) for m in (1, 3, 6))


def perm(target: str = "kpis", purpose: str = "research", until: datetime | None = None) -> Permission:
    return Permission.model_validate({"target": target, "purpose": purpose, "valid_from": MAR, "valid_until": until})


@pytest.mark.parametrize(
    ("at", "category", "purpose", "allowed"),
    [
        (MAR, "kpis", "research", True),  # from is inclusive
        (JAN, "kpis", "research", False),  # not yet
        (JUN, "kpis", "research", False),  # until is exclusive
        (MAR, "raw_series", "research", False),  # another category
        (MAR, "kpis", "benchmarking", False),  # another purpose
    ],
)
def test_a_permission_allows_its_category_and_purpose_within_its_period(
    at: datetime, category: str, purpose: str, allowed: bool
) -> None:
    assert permits([perm(until=JUN)], category, purpose, at) is allowed


def test_withdrawal_ends_what_is_in_force_and_drops_what_would_start_later() -> None:
    later = Permission(target="kpis", purpose="research", valid_from=JUN)
    kept, changed = withdrawn([perm(), later, perm("raw_series")], "kpis", "research", datetime(2026, 4, 1, tzinfo=UTC))
    assert changed == 2
    assert kept == [perm(until=datetime(2026, 4, 1, tzinfo=UTC)), perm("raw_series")]


def test_the_register_refuses_a_purpose_it_does_not_name_and_says_where(tmp_path: Path) -> None:
    path = tmp_path / "members.toml"
    reg = Register(member=[Member(pseudonym="m-abc123", group="g", permission=[perm()])])
    path.write_text(dump_register(reg).replace('purpose = "research"', 'purpose = "marketing"'), encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_register(path)
    assert "m-abc123" in str(err.value) and "marketing" in str(err.value) and str(path) in str(err.value)
    path.write_text('purposes = ["marketing"]\n' + path.read_text(encoding="utf-8"), encoding="utf-8")
    assert load_register(path).consenting("kpis", "marketing", MAR) == ("m-abc123",)


def test_consent_suspension_and_an_empty_consent_survive_the_file() -> None:
    reg = Register(
        member=[
            Member(pseudonym="m-aaaaaa", group="g1", permission=[perm(until=JUN)], suspended=True),
            Member(pseudonym="m-bbbbbb", group="g2", permission=[]),
            Member(pseudonym="m-cccccc", group="g3"),  # the defaults
        ]
    )
    back = Register.model_validate(tomllib.loads(dump_register(reg)))
    assert back == reg
    assert back.consenting("kpis", "research", MAR) == ("m-cccccc",)  # suspended and empty consent left out
    assert not back.is_active("m-aaaaaa")
    resumed = with_member_changed(back, "m-aaaaaa", suspended=False)
    assert resumed.consenting("kpis", "research", MAR) == ("m-aaaaaa", "m-cccccc")


def test_the_odrl_policy_has_one_permission_per_entry_with_purpose_and_dates() -> None:
    policy = odrl_policy("m-abc123", [perm(until=JUN)])
    (rule,) = policy["permission"]
    assert rule["action"] == "use" and rule["target"].endswith("/data/m-abc123/kpis")
    constraints = rule["constraint"][0]["and"]
    assert [c["leftOperand"] for c in constraints] == ["purpose", "dateTime", "dateTime"]
    assert constraints[1]["rightOperand"]["@value"] == "2026-03-01T00:00:00Z"
    assert constraints[2]["operator"] == "lt"
