"""Who may do what: the access matrix, problem details, and the audit log."""

from __future__ import annotations

import json

import pytest
from prometheus_client import generate_latest

from .conftest import Hub

PROBLEM = "application/problem+json"


@pytest.mark.parametrize(
    ("who", "method", "url", "status"),
    [
        (None, "GET", "/v1/series", 401),
        (None, "GET", "/v1/kpis", 401),
        (None, "GET", "/v1/benchmarks/utilisation?asset_class=press", 401),
        (None, "GET", "/v1/catalog", 401),
        (None, "GET", "/v1/tokens", 401),
        ("bogus", "GET", "/v1/series", 401),
        ("member_a", "GET", "/v1/series?member=m-b00001", 403),
        ("member_a", "GET", "/v1/series?member=m-a00001&member=m-b00001", 403),
        ("member_a", "GET", "/v1/kpis?member=m-b00001", 403),
        ("member_a", "GET", "/v1/tokens", 403),
        ("member_a", "POST", "/v1/tokens", 403),
        ("analyst", "GET", "/v1/tokens", 403),
        ("analyst", "POST", "/v1/tokens", 403),
        ("analyst", "DELETE", "/v1/tokens/tk-00000000", 403),
        ("admin", "GET", "/v1/series", 403),
        ("admin", "GET", "/v1/kpis", 403),
        ("member_a", "GET", "/v1/series?member=m-a00001&limit=1", 200),
        ("member_a", "GET", "/v1/kpis", 200),
        ("member_a", "GET", "/v1/catalog", 200),
        ("analyst", "GET", "/v1/series?member=m-b00001&limit=1", 200),
        ("analyst", "GET", "/v1/kpis?member=m-b00001", 200),
        ("admin", "GET", "/v1/tokens", 200),
        ("admin", "GET", "/v1/catalog", 200),
        ("admin", "DELETE", "/v1/tokens/tk-00000000", 404),
        ("analyst", "GET", "/v1/benchmarks/no_such_kpi?asset_class=press", 404),
        ("analyst", "GET", "/v1/benchmarks/utilisation?asset_class=spaceship", 422),
        ("analyst", "GET", "/v1/series?every=5x", 422),
        ("analyst", "GET", "/v1/series?limit=0", 422),
        ("analyst", "GET", "/v1/series?cursor=notacursor", 422),
        ("analyst", "GET", "/v1/nothing", 404),
    ],
)
def test_access_matrix(hub: Hub, who: str | None, method: str, url: str, status: int) -> None:
    headers = {} if who is None else {"Authorization": "Bearer mdh_bogus"} if who == "bogus" else hub.auth(who)
    body = {"role": "analyst"} if method == "POST" else None
    r = hub.client.request(method, url, headers=headers, json=body)
    assert r.status_code == status, r.text
    if status >= 400:
        assert r.headers["content-type"].startswith(PROBLEM)
        problem = r.json()
        assert problem["status"] == status and problem["title"] and problem["detail"] and problem["type"]
    if status == 401:
        assert r.headers["www-authenticate"].startswith("Bearer")


def test_member_series_is_only_its_own(hub: Hub) -> None:
    r = hub.client.get("/v1/series?signal=energy_kwh", headers=hub.auth("member_a"))
    assert r.status_code == 200
    members = {row["member"] for row in r.json()["data"]}
    assert members == {"m-a00001"}
    kpis = hub.client.get(
        "/v1/kpis?period=day&start=2026-03-01T00:00:00Z&end=2026-03-10T00:00:00Z", headers=hub.auth("member_a")
    ).json()
    assert {row["member"] for row in kpis["data"]} == {"m-a00001"}


def test_analyst_sees_all_members(hub: Hub) -> None:
    r = hub.client.get("/v1/series?signal=energy_kwh&every=1d&agg=last", headers=hub.auth("analyst"))
    assert {row["member"] for row in r.json()["data"]} == {
        "m-a00001",
        "m-a00002",
        "m-b00001",
        "m-c00001",
        "m-d00001",
        "m-e00001",
        "m-f00001",
    }


def test_admin_makes_tokens_that_work_and_revokes_them(hub: Hub) -> None:
    r = hub.client.post("/v1/tokens", json={"role": "member", "member": "m-c00001"}, headers=hub.auth("admin"))
    assert r.status_code == 201
    made = r.json()
    me = hub.client.get("/v1/me", headers={"Authorization": f"Bearer {made['token']}"}).json()
    assert me["member"] == "m-c00001" and me["role"] == "member"
    assert me["asset_classes"] == ["cnc_milling", "grinding", "press"]
    assert hub.client.delete(f"/v1/tokens/{made['id']}", headers=hub.auth("admin")).status_code == 204
    audit = [json.loads(line) for line in hub.settings.audit_log.read_text().splitlines()]
    assert audit[0]["endpoint"] == "/v1/tokens" and audit[0]["method"] == "POST"
    assert audit[0]["params"] == {"body": {"role": "member", "member": "m-c00001", "label": "", "id": made["id"]}}
    assert audit[1]["endpoint"] == f"/v1/tokens/{made['id']}" and audit[1]["status"] == 204
    assert made["token"] not in hub.settings.audit_log.read_text()
    assert hub.client.get("/v1/me", headers={"Authorization": f"Bearer {made['token']}"}).status_code == 401
    bad = hub.client.post("/v1/tokens", json={"role": "member"}, headers=hub.auth("admin"))
    assert bad.status_code == 422 and bad.headers["content-type"].startswith(PROBLEM)


def test_audit_log_records_analyst_and_admin_requests_only(hub: Hub) -> None:
    hub.client.get("/v1/series?signal=energy_kwh&member=m-b00001&limit=7", headers=hub.auth("analyst"))
    hub.client.get("/v1/series?signal=energy_kwh&limit=3", headers=hub.auth("member_a"))
    hub.client.get("/v1/tokens", headers=hub.auth("admin"))
    hub.client.get("/v1/tokens", headers=hub.auth("analyst"))  # refused, still audited
    lines = [json.loads(line) for line in hub.settings.audit_log.read_text().splitlines()]
    assert [(e["role"], e["endpoint"], e["status"]) for e in lines] == [
        ("analyst", "/v1/series", 200),
        ("admin", "/v1/tokens", 200),
        ("analyst", "/v1/tokens", 403),
    ]
    first = lines[0]
    assert first["params"] == {"signal": "energy_kwh", "member": "m-b00001", "limit": "7"}
    assert first["rows"] == 7 and first["complete"] is True
    assert first["token_id"].startswith("tk-") and first["ts"].endswith("Z")
    assert lines[1]["rows"] == 4  # four tokens made by the fixture
    text = hub.settings.audit_log.read_text()
    assert not any(token in text for token in hub.tokens.values())


def test_health_readiness_metrics(hub: Hub) -> None:
    assert hub.client.get("/healthz").json() == {"status": "ok", "checks": {}}
    ready = hub.client.get("/readyz").json()
    assert ready["status"] == "ready" and all(ready["checks"].values())
    hub.client.get("/v1/series?limit=5&format=csv", headers=hub.auth("analyst"))
    hub.client.get("/v1/series", headers={})
    refused = hub.client.get("/metrics")  # not on the API port: the hub serves it on the operators' listener
    assert refused.status_code == 404 and "mdh_" not in refused.text
    text = generate_latest(hub.app.state.ctx.metrics.registry).decode()
    assert 'mdh_api_requests_total{method="GET",route="/v1/series",status="200"} 1.0' in text
    assert 'mdh_api_series_rows_total{format="csv"} 5.0' in text
    assert "mdh_api_auth_failures_total 1.0" in text


def test_member_cannot_reach_another_members_asset_by_asset_filter(hub: Hub) -> None:
    r = hub.client.get("/v1/series?asset=a-00000b01", headers=hub.auth("member_a"))  # an asset of m-b00001
    assert r.status_code == 200 and r.json()["rows"] == 0
    k = hub.client.get("/v1/kpis?asset=a-00000b01&start=2026-03-01T00:00:00Z", headers=hub.auth("member_a"))
    assert k.json()["data"] == []
    own = hub.client.get("/v1/series?asset=a-00000b01&limit=5", headers=hub.auth("member_b"))
    assert own.json()["rows"] == 5


def test_dashboard_is_served_from_the_package_without_external_resources(hub: Hub) -> None:
    page = hub.client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in page.headers["content-security-policy"]
    for name, media in (("dashboard.js", "text/javascript"), ("dashboard.css", "text/css")):
        asset = hub.client.get(f"/assets/{name}")
        assert asset.status_code == 200 and asset.headers["content-type"].startswith(media)
        assert "http://" not in asset.text.replace("http://www.w3.org/2000/svg", "") and "https://" not in asset.text
    assert "http://" not in page.text and "https://" not in page.text
    assert hub.client.get("/assets/../settings.py").status_code == 404
    assert hub.client.get("/assets/index.html").status_code == 404
