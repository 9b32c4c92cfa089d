"""Configuration loading: file + environment, and errors that name the file, the key and the expectation."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel, Field, SecretStr

from core.configfile import ConfigError, FileSettings, load_settings
from core.register import Member, Register, dump_register, load_register


class Uplink(BaseModel):
    host: str
    port: int = 8883
    password: SecretStr = SecretStr("")


class DemoSettings(FileSettings, env_prefix="MDH_TEST__"):
    name: str
    uplink: Uplink


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "conf.toml"
    p.write_text(text, encoding="utf-8")
    return p


def test_loads_file(tmp_path: Path) -> None:
    s = load_settings(DemoSettings, write(tmp_path, 'name = "a"\n[uplink]\nhost = "h"\n'))
    assert (s.name, s.uplink.host, s.uplink.port) == ("a", "h", 8883)


def test_environment_overrides_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MDH_TEST__UPLINK__PORT", "1884")
    s = load_settings(DemoSettings, write(tmp_path, 'name = "a"\n[uplink]\nhost = "h"\nport = 1883\n'))
    assert s.uplink.port == 1884


@pytest.mark.parametrize(
    ("text", "key", "expected"),
    [
        ('name = "a"\n[uplink]\nhost = "h"\nport = "many"\n', "uplink.port", "valid integer"),
        ('name = "a"\n', "uplink", "required"),
        ('name = "a"\n[uplink]\nhost = "h"\nprot = 1\n', "uplink.prot", "not a known setting"),
        ('name = "a"\n[uplink\n', "(file)", "valid TOML"),
    ],
)
def test_errors_name_file_key_and_expectation(tmp_path: Path, text: str, key: str, expected: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_settings(DemoSettings, path)
    message = str(err.value)
    assert str(path) in message
    assert f"'{key}'" in message
    assert expected in message


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(DemoSettings, tmp_path / "nope.toml")


def test_secret_never_echoed(tmp_path: Path) -> None:
    path = write(tmp_path, 'name = "a"\n[uplink]\nhost = "h"\npassword = 12345678901\n')
    with pytest.raises(ConfigError) as err:
        load_settings(DemoSettings, path)
    assert "12345678901" not in str(err.value)


def test_register_round_trip(tmp_path: Path) -> None:
    reg = Register(
        member=[
            Member(pseudonym="m-7f3a9c", group='grp "A"', region="DE-NW"),
            Member(pseudonym="m-00aa11", group="grp-b", active=False),
        ]
    )
    path = tmp_path / "members.toml"
    path.write_text(dump_register(reg), encoding="utf-8")
    back = load_register(path)
    assert back == reg
    assert back.is_active("m-7f3a9c") and not back.is_active("m-00aa11") and not back.is_active("m-999999")


def test_register_error_names_entry(tmp_path: Path) -> None:
    path = tmp_path / "members.toml"
    path.write_text('[[member]]\npseudonym = "ACME"\ngroup = "g"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"member\.0\.pseudonym"):
        load_register(path)


class Source(BaseModel):
    url: str


class Nested(FileSettings, env_prefix="MDH_TEST2__"):
    sources: list[Source] = Field(default_factory=list)
    named: dict[str, Source] = Field(default_factory=dict)


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ('[[sources]]\nurl = "x"\n[[sources]]\nurll = "y"\n', "sources.1.urll"),
        ('[named.press]\nurl = "x"\nport = 1\n', "named.press.port"),
    ],
)
def test_unknown_keys_in_lists_and_tables_of_sections(tmp_path: Path, text: str, key: str) -> None:
    with pytest.raises(ConfigError, match=f"'{key}': is not a known setting"):
        load_settings(Nested, write(tmp_path, text))
    ok = load_settings(Nested, write(tmp_path, '[[sources]]\nurl = "x"\n[named.press]\nurl = "y"\n'))
    assert ok.sources[0].url == "x" and ok.named["press"].url == "y"
