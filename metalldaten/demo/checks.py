"""The demo's tokens and links, and what ``--seconds`` checks through the API.

The checks use the API as a member or analyst would: every member's own token must read its
own samples and KPIs, and an analyst's requests release the closed periods of the history,
largest first (month, then week; days when a dashboard first asks for them), so that a day whose
contributors differ from its week's by fewer than five groups is the cell that gives way (the
differencing rule suppresses the cell released later).
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from api.core.kpis import KPIS
from api.tokens import TokenStore
from core.register import dump_register
from gateway.pseudonymise import generate_key

from .replay import HistoryPlan
from .scenario import Plan


@dataclass
class DemoTokens:
    analyst: str
    members: dict[str, str]  # member pseudonym -> token


def prepare(plan: Plan) -> DemoTokens:
    """Write the register and the gateways' keys; make one token per member and one for an analyst."""
    hub_dir = plan.hub.register_file.parent
    hub_dir.mkdir(parents=True, exist_ok=True)
    plan.hub.register_file.write_text(dump_register(plan.register), encoding="utf-8")
    for fp in plan.factories:
        key_file = fp.gateway.identity.key_file
        key_file.parent.mkdir(parents=True, exist_ok=True)
        if not key_file.exists():
            generate_key(key_file)
    tokens = TokenStore(plan.hub.api.tokens_file)
    analyst, _ = tokens.create("analyst", label="demo analyst")
    members = {fp.member: tokens.create("member", member=fp.member, label="demo member")[0] for fp in plan.factories}
    return DemoTokens(analyst=analyst, members=members)


def links(api: str, tokens: DemoTokens) -> dict[str, str]:
    """One dashboard link per member and one for the analyst; the token rides in the URL fragment."""
    out = {member: f"{api}/#token={token}" for member, token in tokens.members.items()}
    out["analyst"] = f"{api}/#token={tokens.analyst}"
    return out


def peer_groups(plan: Plan, minimum: int) -> list[str]:
    """The asset classes in which at least ``minimum`` corporate groups have machines (others never publish)."""
    groups: dict[str, set[str]] = {}
    for fp in plan.factories:
        for cls in fp.factory.classes:
            groups.setdefault(cls, set()).add(fp.factory.group)
    return sorted(cls for cls, g in groups.items() if len(g) >= minimum)


async def check_benchmarks(api: str, analyst: str, history: HistoryPlan, classes: list[str]) -> dict[str, int]:
    """Release every KPI's month and week cells of the history in ``classes`` (months first); published
    cells per KPI. Days are released when someone first asks for them, after their weeks and months."""
    published = dict.fromkeys(KPIS, 0)
    window = {"start": history.start.isoformat(), "end": history.end.isoformat()}
    headers = {"Authorization": f"Bearer {analyst}"}
    async with httpx.AsyncClient(base_url=api, headers=headers, timeout=120) as client:
        for period in ("month", "week"):
            for kpi in KPIS:
                for cls in classes:
                    params = {"asset_class": cls, "period": period, **window}
                    r = await client.get(f"/v1/benchmarks/{kpi}", params=params)
                    r.raise_for_status()
                    published[kpi] += sum(1 for c in r.json()["cells"] if c["status"] == "published")
    return published


async def check_members(api: str, tokens: DemoTokens, members: list[str]) -> str | None:
    """None if every member's own token reads its samples and KPIs; else what is missing."""
    missing: list[str] = []
    async with httpx.AsyncClient(base_url=api, timeout=60) as client:
        for member in members:
            headers = {"Authorization": f"Bearer {tokens.members[member]}"}
            series = await client.get("/v1/series", params={"limit": 10}, headers=headers)
            kpis = await client.get("/v1/kpis", params={"period": "day"}, headers=headers)
            series.raise_for_status()
            kpis.raise_for_status()
            if not series.json().get("data") or not kpis.json().get("data"):
                missing.append(member)
    return f"no data through the API for {', '.join(missing)}" if missing else None
