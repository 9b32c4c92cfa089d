"""Sum a py-spy raw profile (collapsed stacks) of the gateway by pipeline stage.

Each sample is charged to the stage of the frame nearest to the leaf that belongs to a stage, so time
in ``hmac`` called from the pseudonymiser counts as pseudonymisation, and time in ``zstd`` called from
the uplink's encoder counts as sealing. Run: ``python benchmarks/profile_breakdown.py FILE``.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

#: (stage, substrings of a frame "function (path:line)"), checked in this order for each frame.
STAGES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("OPC UA response decoding", ("ua_binary.py", "uatypes.py", "uaprotocol_auto.py", "fastdecode.py")),
    ("sealing (encode, compress)", ("wire/codec", "msgspec", "zstandard", "zstd")),
    ("pseudonymise", ("pseudonymise.py",)),
    ("normalise", ("normalise.py", "policy.py")),
    ("buffer writes", ("buffer.py", "sqlite")),
    ("publish (uplink, MQTT)", ("uplink.py", "core/mqtt.py", "paho")),
    ("notification handling", ("subscription.py", "opcua_source.py", "sources/opcua")),
    ("OPC UA transport (socket, security, session)", ("asyncua",)),
    ("asyncio event loop", ("asyncio",)),
)


def stage_of(stack: list[str]) -> str:
    for frame in reversed(stack):
        for stage, marks in STAGES:
            if any(m in frame for m in marks):
                return stage
    return "other"


def breakdown(path: Path) -> dict[str, float]:
    counts: Counter[str] = Counter()
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        stack_text, _, n = line.rpartition(" ")
        if not stack_text or not n.isdigit():
            continue
        counts[stage_of(stack_text.split(";"))] += int(n)
    total = sum(counts.values()) or 1
    return {stage: round(100 * c / total, 1) for stage, c in counts.most_common()}


def main() -> None:
    shares = breakdown(Path(sys.argv[1]))
    for stage, pct in shares.items():
        print(f"{pct:5.1f} %  {stage}")
    print(json.dumps(shares))


if __name__ == "__main__":
    main()
