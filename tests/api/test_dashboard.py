"""The dashboard in a real headless Chromium against a real uvicorn server on a loopback port."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import uvicorn

from storage import DuckDBStore
from testkit.servers import free_port

from .browser import chromium_page
from .conftest import Hub, make_hub

pytestmark = pytest.mark.integration


@pytest.fixture
def served(tmp_path: Path, filled_store: DuckDBStore) -> Iterator[tuple[Hub, str]]:
    # Data runs 2026-03-02 .. 03-06; on 03-14 the days up to 03-06 are released, later ones are not.
    hub = make_hub(tmp_path, filled_store, now=datetime(2026, 3, 14, tzinfo=UTC))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(hub.app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield hub, f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_dashboard_draws_member_charts_against_peer_bands(served: tuple[Hub, str], tmp_path: Path) -> None:
    hub, base = served
    with chromium_page() as page:
        page.send("Page.navigate", url=base + "/")
        page.wait_for("document.readyState === 'complete' && !!document.getElementById('login')")
        assert page.evaluate("document.querySelectorAll('svg.card, .card svg').length") == 0
        page.evaluate(
            f"document.getElementById('token').value = {json.dumps(hub.tokens['member_a'])};"
            "document.getElementById('period').value = 'day';"
            "document.getElementById('login').requestSubmit(); true"
        )
        page.wait_for(
            "document.querySelectorAll('.card svg').length === 10 && "
            "document.getElementById('status').textContent.startsWith('Member')"
        )
        page.drain()
        counts = page.evaluate(
            "({cards: document.querySelectorAll('.card').length,"
            " classes: [...document.querySelectorAll('#classes h2')].map(h => h.textContent),"
            " bands: document.querySelectorAll('.card rect.band-outer').length,"
            " medians: document.querySelectorAll('.card line.median').length,"
            " cells: document.querySelectorAll('.card g.cell').length,"
            " means: document.querySelectorAll('.card line.mean').length,"
            " own: document.querySelectorAll('.card path.own').length,"
            " suppressed: document.querySelectorAll('.card rect.suppressed').length,"
            " why: [...document.querySelectorAll('.card .why')].map(p => p.textContent)})"
        )
        shot = page.screenshot(tmp_path / "dashboard.png")
        print(f"dashboard screenshot: {shot}")
        # switching the period redraws the charts by week: the week of 03-02 ends 03-09, within the release delay
        page.evaluate(
            "const p = document.getElementById('period'); p.value = 'week';p.dispatchEvent(new Event('change')); true"
        )
        page.wait_for("document.getElementById('status').textContent.endsWith('by week.')")
        weekly = page.evaluate(
            "({bands: document.querySelectorAll('.card rect.band-outer').length,"
            " cards: document.querySelectorAll('.card svg').length,"
            " why: [...document.querySelectorAll('.card .why')].map(p => p.textContent)})"
        )
        page.drain()
    assert counts["classes"] == [f"{c}: your machines against their peers" for c in ("cnc milling", "grinding")]
    assert counts["cards"] == 10
    # cnc_milling, days 03-02 .. 03-06: energy and CO2e per part published on all 5 days; utilisation not yet
    # (released 28 days after the day); good parts per hour never (24 or 48 per running hour for every group:
    # its mean would reveal them, "homogeneous"); the scrap rate never (all scrap is grp-c's: dominance).
    # grinding: 4 groups, nothing. Six contributors: each published cell shows its mean only (no median or bands
    # below 10 contributors).
    assert counts["cells"] == 5 + 5 and counts["means"] == counts["cells"]
    assert counts["bands"] == 0 and counts["medians"] == 0
    assert counts["own"] == 10  # one line per chart: m-a00001 has one asset in each class
    assert counts["suppressed"] > 0
    assert any("fewer than 5 independent contributors" in w for w in counts["why"])
    assert any("not yet released" in w for w in counts["why"])
    assert any("dominate" in w for w in counts["why"])
    assert any("lie so close together" in w for w in counts["why"])
    assert weekly["bands"] == 0 and weekly["cards"] == 10
    assert any("below mean" in w or "above mean" in w for w in counts["why"])  # the member's band, in words
    assert any("not yet released" in w for w in weekly["why"])
    assert page.errors == [], page.errors
    assert shot.stat().st_size > 10_000


def test_dashboard_link_overview_totals_csv_and_phone_width(served: tuple[Hub, str], tmp_path: Path) -> None:
    """A link with the token in its fragment logs in; the page leads with where the member stands, shows its
    energy and CO2e totals, downloads its KPIs as CSV, and fits a phone's width without a horizontal scroll."""
    hub, base = served
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    with chromium_page() as page:
        page.send("Page.setDownloadBehavior", behavior="allow", downloadPath=str(downloads))
        page.send("Page.navigate", url=f"{base}/#token={hub.tokens['member_a']}")
        page.wait_for("document.querySelectorAll('.card svg').length === 10")
        # by day (the fixture's weeks are not released yet)
        page.evaluate(
            "const p = document.getElementById('period'); p.value = 'day'; p.dispatchEvent(new Event('change')); true"
        )
        page.wait_for("document.getElementById('status').textContent.endsWith('by day.')")
        page.drain()
        view = page.evaluate(
            "({hash: location.hash,"
            " first: document.querySelector('main > section:not([hidden])').id,"
            " heading: document.querySelector('#overview h2').textContent,"
            " kpis: [...document.querySelectorAll('#overview li.kpi h3')].map(h => h.textContent),"
            " badges: [...document.querySelectorAll('#overview .badge')].map(b => [b.className, b.textContent]),"
            " trends: [...document.querySelectorAll('#overview .trend')].map(t => t.textContent),"
            " totals: document.getElementById('totals').innerText,"
            " tables: document.querySelectorAll('.card details.alt table').length,"
            " labelled: [...document.querySelectorAll('.card svg')].every(s => s.getAttribute('aria-label')),"
            " skip: document.querySelector('a.skip').getAttribute('href')})"
        )
        page.evaluate("document.getElementById('download').click(); true")
        csv_file = downloads / "kpis-m-a00001-day.csv"
        deadline = time.monotonic() + 20
        while not (csv_file.exists() and csv_file.stat().st_size > 0):
            assert time.monotonic() < deadline, f"no download in {list(downloads.iterdir())}"
            time.sleep(0.1)
        page.send("Emulation.setDeviceMetricsOverride", width=390, height=844, deviceScaleFactor=2, mobile=True)
        page.wait_for("window.innerWidth === 390")
        phone = page.evaluate(
            "({scroll: document.documentElement.scrollWidth, width: window.innerWidth,"
            " card: document.querySelector('.card').getBoundingClientRect().width})"
        )
        page.screenshot(tmp_path / "phone.png")
        # an analyst's link: peer figures only, no own values, no totals
        page.send("Page.navigate", url=f"{base}/#token={hub.tokens['analyst']}")
        page.wait_for(
            "!!document.getElementById('status') && document.getElementById('status').textContent.startsWith('Analyst')"
        )
        page.evaluate(
            "const q = document.getElementById('period'); q.value = 'day'; q.dispatchEvent(new Event('change')); true"
        )
        page.wait_for("document.getElementById('status').textContent.endsWith('by day.')")
        analyst = page.evaluate(
            "({heading: document.querySelector('#overview h2').textContent,"
            " badges: document.querySelectorAll('#overview .badge').length,"
            " peers: [...document.querySelectorAll('#overview .line')].map(l => l.textContent),"
            " totals: document.getElementById('totals').hidden})"
        )
        page.drain()
    assert view["hash"] == ""  # the token left the address bar (and its history)
    assert view["first"] == "overview" and view["heading"] == "Where you stand"
    assert view["kpis"] == [
        "Energy per good part",
        "CO2e per good part",
        "Utilisation",
        "Scrap rate",
        "Good parts per running hour",
    ]
    # published cells give the member its position, in words and in a colour class (never colour alone)
    assert view["badges"], view
    assert all(("good" in cls or "bad" in cls) and ("peer" in text) for cls, text in view["badges"])
    assert all(any(w in t for w in ("improving", "worsening", "steady", "no earlier")) for t in view["trends"])
    assert "kWh" in view["totals"] and "CO2e" in view["totals"] and "Download my KPIs" in view["totals"]
    assert view["tables"] == 10 and view["labelled"] and view["skip"] == "#main"
    rows = csv_file.read_text(encoding="utf-8").splitlines()
    header = rows[0].split(",")
    assert {"member", "asset", "period_start", "energy_kwh", "co2e_kg", "energy_per_good_part_kwh"} <= set(header)
    assert len(rows) > 1 and all(r.split(",")[header.index("member")] == "m-a00001" for r in rows[1:])
    assert phone["scroll"] <= phone["width"] and phone["card"] <= phone["width"]
    assert analyst["heading"] == "Latest published peer figures" and analyst["badges"] == 0 and analyst["totals"]
    assert any("peers: mean" in line for line in analyst["peers"]), analyst
    assert page.errors == [], page.errors
