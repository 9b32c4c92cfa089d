"""One error root: every error the hub raises on purpose is an MdhError, with retryable / retry_after."""

from __future__ import annotations

import pytest
import typer
from typer.testing import CliRunner

from api.errors import ApiError, TokenFileError
from core.cli import CliGroup
from core.configfile import ConfigError
from core.errors import MdhError
from gateway.errors import GatewayError, SourceError, UplinkError
from storage.errors import StoreError, StoreRejected, StoreUnavailable
from wire.errors import WireError


@pytest.mark.parametrize("root", [WireError, ConfigError, GatewayError, StoreError, ApiError, TokenFileError])
def test_every_root_derives_from_mdh_error(root: type[Exception]) -> None:
    assert issubclass(root, MdhError)


def test_retryable_and_retry_after_come_from_the_root() -> None:
    assert StoreUnavailable("down", retry_after=2.5).retryable and StoreUnavailable("x").retry_after is None
    assert StoreUnavailable("down", retry_after=2.5).retry_after == 2.5
    assert not StoreRejected("no").retryable
    assert SourceError("gone").retryable and not SourceError("bad id", retryable=False).retryable
    assert UplinkError("x", retry_after=1.0).retry_after == 1.0
    for cls in (GatewayError, StoreError):  # defined once, on the root
        assert "__init__" not in vars(cls) and "retryable" not in vars(cls)
    assert isinstance(WireError("bad"), ValueError)  # kept: callers catching ValueError still see it


def test_the_command_line_reports_an_mdh_error_and_exits_non_zero() -> None:
    app = typer.Typer(cls=CliGroup)

    @app.command()
    def fails() -> None:
        raise StoreUnavailable("the store is down")

    @app.command()
    def misconfigured() -> None:
        raise ConfigError("hub.toml", [("store.kind", "one of duckdb, influxdb1, influxdb2")])

    runner = CliRunner()
    result = runner.invoke(app, ["fails"])
    assert result.exit_code == 1 and "error: the store is down" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    config = runner.invoke(app, ["misconfigured"])
    assert config.exit_code == 2 and "hub.toml: key 'store.kind'" in config.output
