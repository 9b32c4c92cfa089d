"""A browsed address space -> a reviewable TOML proposal, and its difference to an existing configuration. Pure.

The proposal is one ``[[opcua]]`` section whose ``nodes`` list has one line per variable, grouped by machine
(the object a variable belongs to), addressed by browse path and namespace URI (``path`` + ``path_nsu``; by
``nsu=`` node id where the path mixes namespaces), with the suggested canonical signal, data type and unit
conversion as a comment; variables without a suggestion are listed commented out; variables that look like
personal data are listed as excluded with the reason and are never part of ``nodes``. A
``[policy.signals]`` table per suggested local signal carries the canonical name and the unit to convert.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from .browse import FoundNode, Walk
from .suggest import Suggestion, suggest


@dataclass(slots=True)
class ProposedNode:
    asset: str
    signal: str
    node_id: str
    path: str | None  # browse path below Objects ("Machines/Press7/Power"), if one namespace URI names it
    path_nsu: str | None
    data_type: str | None
    unit: str | None
    suggestion: Suggestion

    def entry(self) -> dict[str, str]:
        e = {"asset": self.asset, "signal": self.signal}
        if self.path is not None and self.path_nsu is not None:
            e |= {"path": self.path, "path_nsu": self.path_nsu}
        else:
            e["node"] = self.node_id
        return e

    def keys(self) -> set[str]:
        out = {self.node_id}
        if self.path is not None and self.path_nsu is not None:
            out.add(f"{self.path_nsu}|{self.path}")
        return out


@dataclass(slots=True)
class Proposal:
    url: str
    name: str
    machines: dict[str, list[ProposedNode]] = field(default_factory=dict)  # machine path -> its variables
    excluded: list[ProposedNode] = field(default_factory=list)
    signals: dict[str, Suggestion] = field(default_factory=dict)  # local signal -> suggestion
    browsed: int = 0
    requests: int = 0
    truncated: str | None = None

    def nodes(self) -> list[ProposedNode]:
        return [n for nodes in self.machines.values() for n in nodes]


def _machine_of(walk: Walk, n: FoundNode) -> tuple[str, str]:
    """(machine path, machine name) of a variable: its enclosing object, or the folder it sits in."""
    if n.parent is None:
        return "", "(Objects)"
    m = walk.nodes[n.parent]
    return "/".join(m.path), m.path[-1]


def build_proposal(walk: Walk, url: str, *, name: str = "discovered") -> Proposal:
    prop = Proposal(url=url, name=name, browsed=len(walk.nodes), requests=walk.requests, truncated=walk.truncated)
    variables = [n for n in walk.nodes if n.is_variable]
    machine_names: dict[str, str] = {}
    for n in variables:
        mpath, mname = _machine_of(walk, n)
        machine_names[mpath] = mname
    name_count = Counter(machine_names.values())
    raw: list[tuple[str, ProposedNode]] = []
    for n in variables:
        mpath, mname = _machine_of(walk, n)
        asset = mname if name_count[mname] == 1 else mpath
        path_nsu = walk.path_nsu(n)
        clean_path = all("/" not in seg for seg in n.path)
        s = suggest(n.path[-1], n.data_type, n.unit, parent=mname)
        pn = ProposedNode(
            asset=asset,
            signal=n.path[-1],
            node_id=n.node_id,
            path="/".join(n.path) if clean_path and path_nsu else None,
            path_nsu=path_nsu if clean_path else None,
            data_type=n.data_type,
            unit=n.unit,
            suggestion=s,
        )
        if s.excluded:
            prop.excluded.append(pn)
        else:
            raw.append((mpath, pn))
    # one policy rule per local signal name: where one name needs two rules (W here, kW there), qualify it
    rules: dict[str, set[tuple[str, str | None]]] = {}
    for _, pn in raw:
        if pn.suggestion.canonical:
            rules.setdefault(pn.signal, set()).add((pn.suggestion.canonical, pn.suggestion.unit))
    for mpath, pn in raw:
        s = pn.suggestion
        if s.canonical and len(rules[pn.signal]) > 1:
            pn.signal = f"{pn.signal} ({s.unit or s.canonical})"
        if s.canonical:
            prop.signals.setdefault(pn.signal, s)
        prop.machines.setdefault(mpath, []).append(pn)
    return prop


def _q(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)  # a JSON string is a valid TOML basic string


def _inline(entry: dict[str, str]) -> str:
    return "{ " + ", ".join(f"{k} = {_q(v)}" for k, v in entry.items()) + " }"


def _key(text: str) -> str:
    return text if re.fullmatch(r"[A-Za-z0-9_-]+", text) else _q(text)


def _about(pn: ProposedNode) -> str:
    s = pn.suggestion
    unit = f", unit {pn.unit}" if pn.unit else ""
    what = f"{pn.data_type or 'unknown type'}{unit}"
    if s.canonical:
        return f"{what} -> {s.canonical}" + (f" ({s.conversion})" if s.conversion else "")
    return f"{what}: no canonical signal suggested"


def render(prop: Proposal) -> str:
    nodes = prop.nodes()
    mapped = sum(1 for n in nodes if n.suggestion.canonical)
    lines = [
        f"# Proposal written by 'metalldaten gateway discover' for {prop.url}.",
        "# Review it, then merge it into the gateway configuration. It names machines in clear, like any",
        "# gateway configuration; nothing of it leaves the factory.",
        f"# {prop.browsed} nodes browsed in {prop.requests} requests: {len(prop.machines)} machines,"
        f" {len(nodes) + len(prop.excluded)} variables, {mapped} with a suggested signal,"
        f" {len(prop.excluded)} excluded as personal data.",
    ]
    if prop.truncated:
        lines.append(f"# INCOMPLETE: the browse {prop.truncated}; raise --max-depth / --max-nodes to see the rest.")
    lines += ["", "[[opcua]]", f"name = {_q(prop.name)}", f"url = {_q(prop.url)}", "nodes = ["]
    for mpath, members in sorted(prop.machines.items()):
        lines.append(f"  # machine {mpath or '(directly below Objects)'}")
        for pn in members:
            if pn.suggestion.canonical:
                lines.append(f"  {_inline(pn.entry())},  # {_about(pn)}")
            else:
                lines.append(f"  # {_inline(pn.entry())},  # {_about(pn)}")
    lines.append("]")
    if prop.excluded:
        lines += ["", "# Excluded: these variables look like personal data and are not read."]
        lines += [f"# - {pn.path or pn.node_id}  ({pn.node_id}): {pn.suggestion.excluded}" for pn in prop.excluded]
    for local, s in sorted(prop.signals.items()):
        lines += ["", f"[policy.signals.{_key(local)}]", f"canonical = {_q(s.canonical or '')}"]
        if s.unit:
            lines.append(f"unit = {_q(s.unit)}  # converted: {s.conversion}")
    return "\n".join(lines) + "\n"


def configured_nodes(text: str, url: str | None = None) -> dict[str, tuple[str, str]]:
    """Address -> (asset, signal) of the ``[[opcua]]`` nodes in a configuration or an earlier proposal
    (of the source with ``url`` if one matches, else of every source)."""
    data: dict[str, Any] = tomllib.loads(text)
    sources = data.get("opcua", [])
    chosen = [s for s in sources if s.get("url") == url] or sources
    out: dict[str, tuple[str, str]] = {}
    for src in chosen:
        for n in src.get("nodes", []):
            key = n["node"] if "node" in n else f"{n.get('path_nsu')}|{n.get('path')}"
            out[key] = (str(n.get("asset")), str(n.get("signal")))
    return out


def difference(prop: Proposal, existing: dict[str, tuple[str, str]], *, limit: int = 200) -> list[str]:
    """What changed on the server since ``existing`` was written: ``+`` new variables, ``-`` configured nodes
    the server no longer has, ``!`` new variables excluded as personal data; then a summary line."""
    seen: set[str] = set()
    added: list[str] = []
    unchanged = 0
    for pn in prop.nodes():
        matched = pn.keys() & existing.keys()
        if matched:
            seen |= matched
            unchanged += 1
        else:
            added.append(f"+ {pn.path or pn.node_id}: {_about(pn)}")
    excluded: list[str] = []
    for pn in prop.excluded:
        matched = pn.keys() & existing.keys()
        seen |= matched
        where = "configured, but looks like personal data" if matched else "new, excluded"
        excluded.append(f"! {pn.path or pn.node_id}: {where} ({pn.suggestion.excluded})")
    removed = [
        f"- {key.replace('|', ' ', 1)}: configured as {asset} / {signal}, not on the server"
        for key, (asset, signal) in sorted(existing.items())
        if key not in seen
    ]
    lines = added + excluded + removed
    shown = lines[:limit]
    if len(lines) > limit:
        shown.append(f"... and {len(lines) - limit} more lines (see the proposal file)")
    shown.append(
        f"{len(added)} new, {len(removed)} no longer on the server, {len(excluded)} excluded as personal data,"
        f" {unchanged} unchanged"
    )
    return shown
