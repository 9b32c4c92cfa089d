"""Loading service settings from a TOML file with environment overrides.

Every service (gateway, hub) has one pydantic-settings class deriving from
:class:`FileSettings`. :func:`load_settings` reads the TOML file, lets environment
variables override any key (``MDH_GATEWAY__UPLINK__HOST=...``: the service prefix,
then the key path joined with ``__``), validates, and turns any problem into a
:class:`ConfigError` that names the file, the key and what was expected.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar, get_args, get_origin

from pydantic import BaseModel, ValidationError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from .errors import MdhError

_SENSITIVE = ("password", "secret", "token", "key")


class ConfigError(MdhError):
    """A configuration file that cannot be used. ``problems`` lists ``(key, expected)`` pairs."""

    exit_code = 2  # like a usage error: the file must be fixed, retrying will not help

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
M = TypeVar("M", bound=BaseModel)


def resolve_path(base: Path, path: Path | None) -> Path | None:
    """``path`` taken relative to ``base`` (the configuration file's folder) unless absolute or unset."""
    return path if path is None or path.is_absolute() else base / path


def with_paths_resolved(model: M, base: Path, fields: tuple[str, ...] = (), **sections: Any) -> M:
    """The one way every settings section resolves its relative paths: a copy of ``model`` whose path
    ``fields`` are taken relative to ``base``, with nested ``sections`` replaced by their resolved copies.

    A copy rather than a change in place, so that frozen sections need no tricks and a section read
    once (e.g. by a test) never changes under its reader.
    """
    update: dict[str, Any] = {name: resolve_path(base, getattr(model, name)) for name in fields}
    return model.model_copy(update={**update, **sections})


def read_toml(path: Path | str) -> dict[str, Any]:
    p = Path(path)
    try:
        with p.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(
            p, [("(file)", "the file does not exist; pass an existing TOML file with --config")]
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(p, [("(file)", f"valid TOML: {exc}")]) from exc


def load_settings(cls: type[S], path: Path | str, *, overrides: dict[str, Any] | None = None) -> S:
    """Build ``cls`` from the TOML file at ``path`` (plus environment), or raise :class:`ConfigError`."""
    data = read_toml(path)
    if overrides:
        data.update(overrides)
    return settings_from_dict(cls, data, source=path, base_dir=Path(path).parent)


def settings_from_dict(
    cls: type[S], data: dict[str, Any], *, source: Path | str = "<settings>", base_dir: Path | None = None
) -> S:
    """Build ``cls`` from ``data``; relative paths are taken relative to ``base_dir`` when given."""
    unknown = list(_unknown_keys(cls, data, ""))
    if unknown:
        raise ConfigError(
            source, [(k, "is not a known setting (check the spelling; see the example configuration)") for k in unknown]
        )
    try:
        settings = cls(**data)
    except ValidationError as exc:
        raise ConfigError(source, [_describe(err) for err in exc.errors()]) from None
    if base_dir is not None and hasattr(settings, "resolve_paths"):
        settings = settings.resolve_paths(base_dir)
    return settings


def _model_of(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model inside ``annotation`` (``Model``, ``Model | None``, ``list[Model]``), if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _model_of(arg)
        if found is not None:
            return found
    return None


def _is_mapping(annotation: Any) -> bool:
    if get_origin(annotation) is dict:
        return True
    return any(_is_mapping(arg) for arg in get_args(annotation) if get_origin(arg) is not None)


def _unknown_keys(model: type[BaseModel], data: Any, prefix: str) -> Iterator[str]:
    """Keys in ``data`` that no field of ``model`` (or its nested sections) declares.

    Every section of every service rejects unknown keys, whether or not its class says
    ``extra="forbid"``: a misspelt key in a configuration file must not be ignored silently.
    """
    if not isinstance(data, dict):
        return
    fields = model.model_fields
    names = {f.alias or n: f for n, f in fields.items()} | dict(fields)
    for key, value in data.items():
        field = names.get(key)
        if field is None:
            if model.model_config.get("extra") != "allow":
                yield f"{prefix}{key}"
            continue
        sub = _model_of(field.annotation)
        if sub is None:
            continue
        if _is_mapping(field.annotation) and isinstance(value, dict):
            for name, item in value.items():
                yield from _unknown_keys(sub, item, f"{prefix}{key}.{name}.")
        elif isinstance(value, list):
            for i, item in enumerate(value):
                yield from _unknown_keys(sub, item, f"{prefix}{key}.{i}.")
        else:
            yield from _unknown_keys(sub, value, f"{prefix}{key}.")


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
