"""Tokens: hashing, the tokens file, and the ``metalldaten tokens`` commands."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from api.cli import app
from api.tokens import TokenStore, hash_token


def test_create_authenticate_revoke(tmp_path: Path) -> None:
    store = TokenStore(tmp_path / "tokens.json")
    token, record = store.create("member", member="m-abc123", label="plant")
    principal = store.authenticate(token)
    assert principal is not None
    assert (principal.role, principal.member, principal.token_id) == ("member", "m-abc123", record.id)
    text = (tmp_path / "tokens.json").read_text()
    assert token not in text and hash_token(token) in text
    assert (tmp_path / "tokens.json").stat().st_mode & 0o077 == 0
    assert store.revoke(record.id) is not None
    assert store.authenticate(token) is None
    assert store.revoke("tk-nothere") is None


@pytest.mark.parametrize(
    ("role", "member"), [("member", None), ("member", "acme"), ("analyst", "m-abc123"), ("root", None)]
)
def test_bad_bindings_are_refused(tmp_path: Path, role: str, member: str | None) -> None:
    with pytest.raises(ValueError):
        TokenStore(tmp_path / "t.json").create(role, member=member)


def test_another_process_adding_a_token_is_seen(tmp_path: Path) -> None:
    api_side = TokenStore(tmp_path / "tokens.json")
    assert api_side.records() == []
    token, _ = TokenStore(tmp_path / "tokens.json").create("analyst")
    assert api_side.authenticate(token) is not None


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=80))
def test_random_strings_never_authenticate(guess: str) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        store = TokenStore(Path(d) / "t.json")
        store.create("admin")
        assert store.authenticate(guess) is None


def test_cli_create_list_revoke(tmp_path: Path) -> None:
    runner = CliRunner()
    path = str(tmp_path / "tokens.json")
    result = runner.invoke(app, ["create", "--role", "member", "--member", "m-abc123", "--tokens-file", path])
    assert result.exit_code == 0, result.output
    token = result.stdout.strip().splitlines()[-1]
    assert token.startswith("mdh_")
    principal = TokenStore(path).authenticate(token)
    assert principal is not None and principal.member == "m-abc123"

    listed = runner.invoke(app, ["list", "--tokens-file", path])
    assert listed.exit_code == 0
    assert principal.token_id in listed.stdout and token not in listed.stdout

    assert runner.invoke(app, ["revoke", principal.token_id, "--tokens-file", path]).exit_code == 0
    assert TokenStore(path).authenticate(token) is None
    assert json.loads(Path(path).read_text())["tokens"][0]["revoked"]

    bad = runner.invoke(app, ["create", "--role", "analyst", "--member", "m-abc123", "--tokens-file", path])
    assert bad.exit_code != 0
    assert runner.invoke(app, ["revoke", "tk-nothere", "--tokens-file", path]).exit_code == 1
