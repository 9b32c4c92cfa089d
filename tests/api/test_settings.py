"""The example configuration in api/ loads, and wrong values are refused with the key named."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from pydantic import ValidationError

from api.settings import ApiSettings

EXAMPLE = Path(__file__).resolve().parents[2] / "api" / "api.example.toml"


def test_example_configuration_loads_with_defaults_spelled_out() -> None:
    section = tomllib.loads(EXAMPLE.read_text())["api"]
    settings = ApiSettings.model_validate(section)
    assert settings == ApiSettings()  # the example states the defaults
    resolved = settings.resolve_paths(Path("/etc/mdh"))
    assert resolved.tokens_file == Path("/etc/mdh/tokens.json")
    assert resolved.dp.budget_file == Path("/etc/mdh/dp_budget.json")


@pytest.mark.parametrize(
    ("patch", "key"),
    [
        ({"min_contributors": 1}, "min_contributors"),
        ({"max_share_largest": 1.5}, "max_share_largest"),
        ({"dp": {"clip": {"utilisation": [1.0, 0.0]}}}, "dp"),
        ({"tokenfile": "x"}, "tokenfile"),
    ],
)
def test_wrong_values_name_the_key(patch: dict[str, object], key: str) -> None:
    with pytest.raises(ValidationError) as err:
        ApiSettings.model_validate(patch)
    assert key in str(err.value)
