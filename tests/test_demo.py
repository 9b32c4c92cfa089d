"""`metalldaten demo`: weeks of history from thirteen simulated factories reach the hub through gateways and
broker, every KPI has published benchmark cells, and the dashboard opened from a printed link draws them."""

from __future__ import annotations

import asyncio
import io
import random
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from metalldaten.cli import app
from metalldaten.demo.checks import peer_groups
from metalldaten.demo.history import MachineHistory, WorkPattern, history_start
from metalldaten.demo.machines import MachineSpec
from metalldaten.demo.run import run_demo
from metalldaten.demo.scenario import FACTORIES, make_plan

from .api.browser import chromium_page

#: Eight days hold at least five weekdays and one whole week, whatever day the suite runs on.
HISTORY_DAYS = 8


def _dashboard(link: str) -> dict[str, object]:
    with chromium_page() as page:
        page.send("Page.navigate", url=link)
        page.wait_for(
            "!!document.getElementById('status') && "
            "document.getElementById('status').textContent.startsWith('Member') && "
            "document.querySelectorAll('.card svg').length > 0",
            timeout=60,
        )
        page.drain()
        seen = page.evaluate(
            "({hash: location.hash,"
            " cells: document.querySelectorAll('.card g.cell').length,"
            " means: document.querySelectorAll('.card g.cell line.mean').length,"
            " badges: document.querySelectorAll('#overview .badge').length,"
            " totals: document.getElementById('totals').innerText})"
        )
        assert page.errors == [], page.errors
    return seen


@pytest.mark.slow
@pytest.mark.integration
async def test_demo_history_reaches_the_api_and_publishes_every_kpi(tmp_path: Path) -> None:
    out = io.StringIO()
    seen: dict[str, object] = {}

    async def open_a_printed_link() -> None:
        # the first member's link, as the console printed it (not from the result)
        match = re.search(r"^\s+m-[0-9a-f]{6}\s.*?(http://127\.0\.0\.1:\d+/#token=mdh_\S+)", out.getvalue(), re.M)
        assert match, out.getvalue()[-2000:]
        seen.update(await asyncio.to_thread(_dashboard, match.group(1)))

    result = await run_demo(
        seconds=240,  # a bound: the demo stops once the dashboard was seen
        workdir=tmp_path,
        history_days=HISTORY_DAYS,
        console=Console(file=out, width=200),
        while_live=open_a_printed_link,
    )
    assert result.ok, result.reason
    # every member's data through the API (the demo's own check, with each member's token) ...
    assert len(result.samples_per_member) == len(FACTORIES)
    assert all(n > 0 for n in result.samples_per_member.values())
    # ... at least one published cell of every KPI ...
    assert result.published and all(n >= 1 for n in result.published.values()), result.published
    # ... and the member's dashboard draws published peer cells, its position and its totals
    assert seen["hash"] == ""
    assert isinstance(seen["cells"], int) and seen["cells"] > 0 and seen["means"] == seen["cells"]
    assert isinstance(seen["badges"], int) and seen["badges"] > 0
    assert "kWh" in str(seen["totals"])
    # the console showed the status board and the links, and no log line
    text = out.getvalue()
    assert "history at the hub" in text and "analyst" in text
    assert "WARNING" not in text and "INFO" not in text
    assert (tmp_path / "demo.log").stat().st_size > 0
    assert (tmp_path / "hub" / "cell_key").exists()  # the hub's secrets stay in the work folder
    # the hub holds pseudonyms only: no factory name is anywhere in the hub's files
    for path in (tmp_path / "hub").iterdir():
        if path.is_file() and path.suffix in (".toml", ".jsonl", ".log"):
            text = path.read_text(encoding="utf-8", errors="replace")
            assert not any(f.name in text for f in FACTORIES), path


def test_the_cast_has_enough_independent_contributors() -> None:
    plan = make_plan(workdir=Path("/nonexistent"), ports=list(range(20000, 20000 + len(FACTORIES) + 2)), seed=7)
    groups = {fp.factory.group for fp in plan.factories}
    assert len(plan.factories) >= 12 and len(groups) >= 10
    assert len(peer_groups(plan, 5)) >= 3  # three asset classes with at least five groups each
    assert len(peer_groups(plan, 1)) > len(peer_groups(plan, 5))  # and one that can never publish


def test_history_is_shifts_and_off_time_with_a_down_day_and_a_counter_reset() -> None:
    assert history_start(datetime(2026, 12, 1, 9, tzinfo=UTC), None) == datetime(2026, 11, 1, tzinfo=UTC)
    assert history_start(datetime(2026, 3, 31, 15, tzinfo=UTC), None) == datetime(2026, 2, 1, tzinfo=UTC)
    assert history_start(datetime(2026, 3, 31, 15, tzinfo=UTC), 8) == datetime(2026, 3, 23, tzinfo=UTC)
    today = datetime(2026, 12, 3, tzinfo=UTC)  # a Thursday: the down day is Tuesday, the reset Wednesday
    spec = MachineSpec(serial="S", model="DMU 50", rated_kw=20.0, cycle_s=60.0, scrap_rate=0.02)
    pattern = WorkPattern(shifts=1, down_day=2, reset_day=1)
    h = MachineHistory(spec=spec, pattern=pattern, rng=random.Random(1), first=True)
    work = h.day(datetime(2026, 11, 23, tzinfo=UTC), today)  # a Monday
    states = [v for _, k, v in work if k == "State"]
    assert len(states) == 8 * 12  # one shift of eight hours, a state every five minutes, nothing while off
    assert "running" in states and "off" not in states
    parts = [v for _, k, v in work if k == "PartCounter"]
    assert len(parts) == 9 and parts == sorted(parts) and parts[-1] > parts[0]  # hourly, and after the shift
    assert [k for _, k, _ in h.day(datetime(2026, 11, 29, tzinfo=UTC), today) if k == "State"] == []  # Sunday
    down = h.day(datetime(2026, 12, 1, tzinfo=UTC), today)
    assert {v for _, k, v in down if k == "State"} == {"down"}
    before = max(int(v) for _, k, v in down if k == "PartCounter")
    reset = h.day(datetime(2026, 12, 2, tzinfo=UTC), today)
    assert min(int(v) for _, k, v in reset if k == "PartCounter") < before  # restarted from zero
    ts = [t for t, _, _ in work]
    assert ts == sorted(ts)  # in time order, as a gateway's watermarks require


def test_cli_lists_the_sub_commands() -> None:
    out = CliRunner().invoke(app, ["--help"])
    assert out.exit_code == 0
    for command in ("demo", "gateway", "hub", "broker", "tokens"):
        assert command in out.output
