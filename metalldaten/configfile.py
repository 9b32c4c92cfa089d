"""Loading service settings from a TOML file with environment overrides.

Every service (gateway, hub) has one pydantic-settings class deriving from
:class:`FileSettings`. :func:`load_settings` reads the TOML file, lets environment
variables override any key (``MDH_GATEWAY__UPLINK__HOST=...``: the service prefix,
then the key path joined with ``__``), validates, and turns any problem into a
:class:`ConfigError` that names the file, the key and what was expected.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, TypeVar

from pydantic import ValidationError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

_SENSITIVE = ("password", "secret", "token", "key")


class ConfigError(Exception):
    """A configuration file that cannot be used. ``problems`` lists ``(key, expected)`` pairs."""

    def __init__(self, path: Path | str, problems: list[tuple[str, str]]) -> None:
        self.path = str(path)
        self.problems = problems
        lines = [f"{self.path}: key '{key}': {expected}" for key, expected in problems]
        super().__init__("invalid configuration\n  " + "\n  ".join(lines))


class FileSettings(BaseSettings):
    """Base for service settings: environment variables override the file, unknown keys are errors."""

    model_config = SettingsConfigDict(extra="forbid", env_nested_delimiter="__", validate_default=True)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Earlier sources win: the environment overrides what the file (passed as init kwargs) says.
        return (env_settings, init_settings)


S = TypeVar("S", bound=FileSettings)


def read_toml(path: Path | str) -> dict[str, Any]:
    p = Path(path)
    try:
        with p.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(p, [("(file)", "the file does not exist; pass an existing TOML file with --config")]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(p, [("(file)", f"valid TOML: {exc}")]) from exc


def load_settings(cls: type[S], path: Path | str, *, overrides: dict[str, Any] | None = None) -> S:
    """Build ``cls`` from the TOML file at ``path`` (plus environment), or raise :class:`ConfigError`."""
    data = read_toml(path)
    if overrides:
        data.update(overrides)
    return settings_from_dict(cls, data, source=path)


def settings_from_dict(cls: type[S], data: dict[str, Any], *, source: Path | str = "<settings>") -> S:
    try:
        settings = cls(**data)
    except ValidationError as exc:
        raise ConfigError(source, [_describe(err) for err in exc.errors()]) from None
    relative_to = Path(source).parent if str(source) != "<settings>" else None
    if relative_to is not None and hasattr(settings, "resolve_paths"):
        settings.resolve_paths(relative_to)
    return settings


def _describe(err: Any) -> tuple[str, str]:
    key = ".".join(str(p) for p in err["loc"]) or "(top level)"
    msg = str(err["msg"])
    if err["type"] == "extra_forbidden":
        return key, "is not a known setting (check the spelling; see the example configuration)"
    if err["type"] == "missing":
        return key, "is required but missing"
    if any(word in key.lower() for word in _SENSITIVE):
        return key, msg
    shown = repr(err.get("input"))
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return key, f"{msg} (got {shown})"
