"""Source plugins: each folder's sample loads, its README shows exactly that sample, and the factory builds it."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from core.configfile import ConfigError, settings_from_dict
from gateway.config import GatewaySettings
from gateway.normalise import Normaliser
from gateway.policy import compile_policy
from gateway.pseudonymise import MemberKey, Pseudonymiser
from gateway.sources import KINDS, SourceContext, build_sources

SOURCES = Path(__file__).resolve().parents[2] / "gateway" / "sources"
EXAMPLE = SOURCES.parent / "gateway.example.toml"
KEY = MemberKey(key_id="k1", secret=bytes(range(32)))


def _settings(tmp: Path, sections: dict[str, object]) -> GatewaySettings:
    identity = {"member": "m-0a1b2c", "gateway_name": "gw", "key_file": str(tmp / "member.key")}
    return settings_from_dict(GatewaySettings, {"identity": identity, **sections})


@pytest.mark.parametrize("kind", KINDS)
def test_sample_loads_is_the_readme_block_and_part_of_the_example(kind: str, tmp_path: Path) -> None:
    sample = (SOURCES / kind / "sample.toml").read_text(encoding="utf-8")
    readme = (SOURCES / kind / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```toml\n(.*?)```", readme, re.DOTALL)
    assert blocks == [sample], f"the README of {kind} must show sample.toml as its configuration block"
    body = sample.split("\n", 1)[1]  # without its one-line heading comment
    assert body in EXAMPLE.read_text(encoding="utf-8"), "the gateway example is made of the plugins' samples"
    settings = _settings(tmp_path, tomllib.loads(sample))
    assert len(getattr(settings, kind)) == 1


def test_factory_builds_one_runner_per_section_in_order(tmp_path: Path) -> None:
    sections = {k: tomllib.loads((SOURCES / k / "sample.toml").read_text(encoding="utf-8"))[k] for k in KINDS}
    settings = _settings(tmp_path, sections)
    ps = Pseudonymiser(KEY)
    policy = compile_policy(settings.policy)
    made: list[Normaliser] = []

    def normaliser() -> Normaliser:
        made.append(Normaliser(policy, ps))
        return made[-1]

    ctx = SourceContext(normaliser=normaliser, sink=lambda s, d=None: None, pki_dir=tmp_path, client_id=lambda n: n)
    runners = build_sources(settings, ctx)
    assert [(r.kind, r.name) for r in runners] == [("opcua", "halle3"), ("mqtt", "leitstand")]
    assert [r.normaliser for r in runners] == made  # one normaliser per source
    assert all(not r.connected for r in runners)
    # every source counts its normaliser's readings stamped ahead of the clock as its own problem
    for r in runners:
        r.normaliser.on_future(700 * 10**9)  # type: ignore[misc]
        assert r.problems.events["future"] == 1 and "input_future" in r.problems.active()


def test_an_audit_slower_than_the_heartbeat_is_refused(tmp_path: Path) -> None:
    source = {"name": "halle", "url": "opc.tcp://127.0.0.1:4840/", "audit_interval_s": 90}
    with pytest.raises(ConfigError, match=r"audit_interval_s must be shorter than uplink\.heartbeat_s"):
        _settings(tmp_path, {"opcua": [source], "uplink": {"heartbeat_s": 60}})
    assert _settings(tmp_path, {"opcua": [{**source, "audit_interval_s": 0}]}).opcua[0].audit_interval_s == 0
