"""What the demo's console shows while it runs: one line per member and the history's progress (rich).

:class:`MemberStatus` rows are read from the running parts (the factory's replay, the gateway's
uplink and buffer, the hub's store) by :mod:`.run`; this module only renders them.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.console import Group, RenderableType
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text


@dataclass(frozen=True, slots=True, kw_only=True)
class MemberStatus:
    member: str
    factory: str  # clear name: the console is the demo operator's, inside every factory at once
    transport: str
    connected: bool
    days_done: int
    days_total: int
    live: bool
    sent: int  # samples the hub's broker acknowledged to the gateway
    stored: int  # samples of the member in the hub's store
    backlog: int  # samples in the gateway's disk buffer and not yet flushed


def board(rows: list[MemberStatus], *, stored_history: int, expected_history: int, phase: str) -> RenderableType:
    """The status table and, while history loads, a progress bar of history samples stored at the hub."""
    table = Table(title=f"Metall+Daten demo · {phase}", title_justify="left", expand=False)
    table.add_column("member", no_wrap=True)
    table.add_column("factory (known only inside it)", no_wrap=True, overflow="ellipsis", max_width=26)
    table.add_column("source", no_wrap=True)
    table.add_column("gateway", no_wrap=True)
    for name in ("history", "sent", "stored", "backlog"):
        table.add_column(name, justify="right", no_wrap=True)
    for r in rows:
        history = "live" if r.live else f"day {r.days_done}/{r.days_total}"
        table.add_row(
            r.member,
            r.factory,
            "OPC UA" if r.transport == "opcua" else "Sparkplug",
            Text("up", style="green") if r.connected else Text("connecting", style="yellow"),
            history,
            f"{r.sent:,}",
            f"{r.stored:,}",
            Text(f"{r.backlog:,}", style="yellow" if r.backlog > 10_000 else ""),
        )
    if expected_history <= 0:
        return table
    done = min(stored_history, expected_history)
    bar = Table.grid(padding=(0, 1))
    bar.add_row(
        Text("history at the hub"),
        ProgressBar(total=expected_history, completed=done, width=40),
        Text(f"{done:,} / {expected_history:,} samples ({done / expected_history:.0%})"),
    )
    return Group(table, bar)
