"""grafana/: the provisioning files parse, and every dashboard query names only what the hub really writes.

Prometheus expressions are checked against the metric families the hub's registry (ingestor and API) and a
gateway's collector expose; InfluxQL queries against the store's schema (measurements, fields and tags of
storage.influx) and the signal catalogue. Analysts' panels pool by asset class: no query names a member or
an asset, so Grafana never shows what the API's disclosure control keeps from members.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from api.http.metrics import ApiMetrics
from core.configfile import load_settings
from gateway.config import GatewaySettings
from gateway.metrics import GatewayCollector
from gateway.pseudonymise import generate_key
from gateway.runner import Gateway
from metalldaten.demo.machines import factory_machines
from metalldaten.demo.scenario import FACTORIES, gateway_settings
from metalldaten.hub import load_hub_settings
from storage import ROLLUP_SCHEMA
from storage.influx.lineprotocol import SAMPLES_MEASUREMENT, SampleEncoder, encode_point
from storage.ingest_metrics import IngestMetrics
from wire import ASSET_CLASSES, Sample
from wire.catalog import SIGNALS

ROOT = Path(__file__).resolve().parent.parent
GRAFANA = ROOT / "grafana"


def _written(line: str) -> tuple[str, set[str], set[str]]:
    """Measurement, fields and tags of one line of line protocol (no escaped characters in our names)."""
    series, fields, _ts = line.split(" ")
    measurement, *tags = series.split(",")
    return measurement, {f.split("=")[0] for f in fields.split(",")}, {t.split("=")[0] for t in tags}


def influx_schema() -> dict[str, tuple[set[str], set[str]]]:
    """What the InfluxDB store really writes: measurement -> (fields, tags), from its own encoders."""
    out: dict[str, tuple[set[str], set[str]]] = {}
    number = Sample(NOW_NS, "a-1", "press", "power_kw", 1.5, 0)
    state = Sample(NOW_NS, "a-1", "press", "state", "running", 0)
    for line in SampleEncoder().encode_python("m-000001", [number, state]).decode().splitlines():
        measurement, fields, tags = _written(line)
        old_fields, old_tags = out.get(measurement, (set(), set()))
        out[measurement] = (old_fields | fields, old_tags | tags)
    keys = {"member": "m-000001", "asset": "a-1", "asset_class": "press"}
    rollup = {c: 1.0 for c in ROLLUP_SCHEMA if c not in (*keys, "hour")}
    measurement, fields, tags = _written(encode_point("rollups", keys, rollup, NOW_NS))
    out[measurement] = (fields, tags)
    return out


NOW_NS = 1_790_000_000 * 10**9
INFLUX_SCHEMA = influx_schema()
#: InfluxQL that InfluxDB 3.x does not serve (the store stays inside the common subset).
NOT_IN_3X = ("INTEGRAL", "SAMPLE", "SLIMIT", "HOLT_WINTERS")
_SUFFIXES = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_sum", "_count", "_created"), "gauge": ("",)}


def _exposed(families: Any) -> set[str]:
    return {f.name + suffix for f in families for suffix in _SUFFIXES.get(f.type, ("",))}


def hub_metric_names() -> set[str]:
    registry = CollectorRegistry()
    IngestMetrics(registry, instance="hub")
    ApiMetrics(registry)
    return _exposed(registry.collect())


def gateway_metric_names(tmp_path: Path) -> set[str]:
    f = FACTORIES[0]
    settings = gateway_settings(
        workdir=tmp_path,
        index=1,
        factory=f,
        member="m-000001",
        machines=factory_machines(1, list(f.classes), 7),
        port=4840,
        namespace="urn:x",
        broker_port=1883,
    )
    settings.identity.key_file.parent.mkdir(parents=True)
    generate_key(settings.identity.key_file)
    gw = Gateway(settings)
    gw.buffer.open()
    try:
        return _exposed(GatewayCollector(gw).collect())
    finally:
        gw.buffer.close()


def dashboards() -> dict[str, dict[str, Any]]:
    out = {}
    for path in sorted((GRAFANA / "dashboards").glob("*.json")):
        out[path.stem] = json.loads(path.read_text(encoding="utf-8"))
    return out


def targets(kind: str) -> list[tuple[str, str]]:
    """(dashboard/panel, query) of every target whose data source is of ``kind``."""
    out = []
    for name, board in dashboards().items():
        for panel in board["panels"]:
            for t in panel["targets"]:
                if t["datasource"]["type"] == kind:
                    out.append((f"{name}/{panel['title']}", t["expr"] if kind == "prometheus" else t["query"]))
    return out


def test_data_sources_and_dashboard_provider() -> None:
    sources = yaml.safe_load((GRAFANA / "provisioning/datasources/datasources.yml").read_text(encoding="utf-8"))
    by_type = {d["type"]: d for d in sources["datasources"]}
    assert set(by_type) == {"influxdb", "prometheus"}
    assert by_type["influxdb"]["jsonData"]["version"] == "InfluxQL"  # the v1 /query API that 1.8, 2.x and 3.x serve
    assert "Token" not in json.dumps(by_type["influxdb"]["jsonData"])  # the token goes in secureJsonData only
    assert by_type["influxdb"]["secureJsonData"]["httpHeaderValue1"].startswith("Token ${")
    uids = {d["uid"] for d in sources["datasources"]}
    for name, board in dashboards().items():
        for panel in board["panels"]:
            assert panel["datasource"]["uid"] in uids, f"{name}/{panel['title']}"
            for t in panel["targets"]:
                assert t["datasource"]["uid"] in uids, f"{name}/{panel['title']}"
    provider = yaml.safe_load((GRAFANA / "provisioning/dashboards/dashboards.yml").read_text(encoding="utf-8"))
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"
    assert set(dashboards()) == {"operations", "analysts"}


def test_prometheus_queries_name_metrics_the_hub_and_gateways_expose(tmp_path: Path) -> None:
    known = hub_metric_names() | gateway_metric_names(tmp_path)
    used: set[str] = set()
    for where, expr in targets("prometheus"):
        names = set(re.findall(r"\bmdh_[a-z0-9_]+", expr))
        assert names, f"{where}: no metric of ours in {expr!r}"
        assert names <= known, f"{where}: {sorted(names - known)} are not exposed"
        used |= names
    # the operations board covers what operators ask about first
    for needed in (
        "mdh_ingest_samples_total",
        "mdh_ingest_store_write_seconds_bucket",
        "mdh_ingest_dead_letters_total",
        "mdh_ingest_gateway_last_seen_timestamp_seconds",
        "mdh_gateway_buffer_samples",
    ):
        assert needed in used


def test_the_schema_is_read_from_the_store_encoders() -> None:
    assert INFLUX_SCHEMA[SAMPLES_MEASUREMENT] == (
        {"value", "text", "quality"},
        {"member", "asset", "asset_class", "signal"},
    )
    assert "energy_kwh" in INFLUX_SCHEMA["rollups"][0] and "asset_class" in INFLUX_SCHEMA["rollups"][1]


def test_a_misspelt_metric_would_be_caught() -> None:
    assert "mdh_ingest_sample_total" not in hub_metric_names()
    assert "mdh_ingest_samples" not in hub_metric_names()  # a counter is exposed with _total


def test_influxql_queries_name_the_store_schema_and_pool_by_asset_class() -> None:
    queries = targets("influxdb")
    assert queries
    for where, q in queries:
        measurements = re.findall(r'\bFROM\s+"(\w+)"', q)
        assert len(measurements) == 1 and measurements[0] in INFLUX_SCHEMA, f"{where}: {q}"
        fields, tags = INFLUX_SCHEMA[measurements[0]]
        select = q[: q.index(" FROM ")]
        for name in re.findall(r'"(\w+)"', select):
            assert name in fields, f"{where}: no field {name!r} in {measurements[0]}"
        rest = q[q.index(" FROM ") :]
        for name in re.findall(r'"(\w+)"', rest)[1:]:
            assert name in tags, f"{where}: no tag {name!r} in {measurements[0]}"
            assert name not in ("member", "asset"), f"{where}: analysts' panels pool by asset class only"
        for signal in re.findall(r"\"signal\"\s*=\s*'(\w+)'", q):
            assert signal in SIGNALS, f"{where}: no signal {signal!r} in the catalogue"
        assert "$timeFilter" in q, f"{where}: unbounded in time"
        assert not any(re.search(rf"\b{word}\b", q.upper()) for word in NOT_IN_3X), where
    variables = dashboards()["analysts"]["templating"]["list"]
    classes = next(v for v in variables if v["name"] == "asset_class")["query"].split(",")
    assert set(classes) <= set(ASSET_CLASSES)


def test_prometheus_scrapes_the_ports_the_deployment_listens_on() -> None:
    scrape = yaml.safe_load((GRAFANA / "prometheus.yml").read_text(encoding="utf-8"))
    targets_by_job = {c["job_name"]: c["static_configs"][0]["targets"] for c in scrape["scrape_configs"]}
    hub = load_hub_settings(ROOT / "deploy/hub.toml")
    assert targets_by_job["hub"] == [f"hub:{hub.metrics_listen.rsplit(':', 1)[1]}"]
    gw = load_settings(GatewaySettings, ROOT / "deploy/gateway-sim.toml")
    assert targets_by_job["gateway"] == [f"gateway:{gw.health.port}"]


@pytest.mark.parametrize("service", ["grafana", "prometheus"])
def test_compose_runs_grafana_with_these_files(service: str) -> None:
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))["services"]
    svc = services[service]
    mounts = [v.split(":")[0] for v in svc["volumes"]]
    assert any(m.startswith("./grafana/") for m in mounts)
    if service == "grafana":
        assert "./grafana/provisioning" in mounts and "./grafana/dashboards" in mounts
        assert all(p.startswith("127.0.0.1:") for p in svc["ports"])  # operators only, on loopback
