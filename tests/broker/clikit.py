"""Running the trustee's broker commands in-process, as the broker tests do."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from metalldaten.broker_cli import app

runner = CliRunner()


def invoke(*args: str | Path) -> str:
    """Run ``metalldaten broker ARGS``; fail the test with its output unless it exits 0."""
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result.output


def env_password(text: str) -> str:
    """The password from the ``MDH_…=`` line a command printed."""
    return next(line.split("=", 1)[1].strip() for line in text.splitlines() if line.startswith("MDH_"))
