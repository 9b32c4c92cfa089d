"""`metalldaten demo --seconds N` in-process: data from every simulated factory reaches the API."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from metalldaten.cli import app
from metalldaten.demo.run import run_demo
from metalldaten.demo.scenario import FACTORIES


@pytest.mark.slow
async def test_demo_moves_data_from_every_factory(tmp_path: Path) -> None:
    result = await run_demo(seconds=12, workdir=tmp_path)
    assert result.ok, result.reason
    assert len(result.samples_per_member) == len(FACTORIES)
    assert all(n > 0 for n in result.samples_per_member.values())
    # The store holds pseudonyms only: no factory name is anywhere in the hub's files.
    for path in (tmp_path / "hub").iterdir():
        if path.is_file() and path.suffix in (".toml", ".jsonl", ".log"):
            text = path.read_text(encoding="utf-8", errors="replace")
            assert not any(f.name in text for f in FACTORIES), path


def test_cli_lists_the_sub_commands() -> None:
    out = CliRunner().invoke(app, ["--help"])
    assert out.exit_code == 0
    for command in ("demo", "gateway", "hub", "broker", "tokens"):
        assert command in out.output
