"""Discovery: browse an OPC UA server and propose a reviewable configuration (``metalldaten gateway discover``).

:mod:`.browse` walks the address space (batched, bounded, continuation points); :mod:`.suggest` proposes a
canonical signal or an exclusion per variable; :mod:`.proposal` renders the TOML and the difference to an
existing configuration; :mod:`.run` connects and ties them together.
"""

from .browse import Browser, FoundNode, Walk
from .proposal import Proposal, ProposedNode, build_proposal, configured_nodes, difference, render
from .run import DiscoverLimits, browse_server, run_discover
from .suggest import Suggestion, suggest

__all__ = [
    "Browser",
    "DiscoverLimits",
    "FoundNode",
    "Proposal",
    "ProposedNode",
    "Suggestion",
    "Walk",
    "browse_server",
    "build_proposal",
    "configured_nodes",
    "difference",
    "render",
    "run_discover",
    "suggest",
]
