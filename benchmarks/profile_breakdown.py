"""Sum a py-spy raw profile (collapsed stacks) of the gateway by pipeline stage.

Each sample is charged to the stage of the frame nearest to the leaf that belongs to a stage, so time
in ``hmac`` called from the pseudonymiser counts as pseudonymisation, and time in ``zstd`` called from
the uplink's encoder counts as sealing. Run: ``python benchmarks/profile_breakdown.py FILE`` (the gateway's
stages) or ``... FILE --hub`` (the hub ingestor's, from ``hub_ingest.py --profile``).
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
    ("normalise", ("normalise.py", "normalise_batch.py", "policy.py")),
    ("buffer writes", ("buffer.py", "sqlite")),
    ("publish (uplink, MQTT)", ("uplink.py", "core/mqtt.py", "paho")),
    ("notification handling", ("subscription.py", "opcua_source.py", "sources/opcua")),
    ("OPC UA transport (socket, security, session)", ("asyncua",)),
    ("asyncio event loop", ("asyncio",)),
)


#: The hub ingestor's stages (``benchmarks/hub_ingest.py --profile``). A stage whose name starts with "waiting"
#: takes a stack with the mark anywhere in it; one that starts with "idle", a stack whose innermost frame has it.
HUB_STAGES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("waiting on InfluxDB (request in flight)", ("_receive_response_headers",)),
    ("idle (waiting for work or input)", ("EpollSelector.select", "Condition.wait", "Client._loop (", "_worker (")),
    ("dirty markers", ("dirty_markers",)),
    ("validation", ("validate_batch", "_all_samples_valid", "sample_problem", "check_message")),
    ("wire decode (zstd, MessagePack)", ("decode_batch", "zstandard", "msgspec")),
    ("line-protocol encoding", ("lineprotocol.py", "polars")),
    ("HTTP (sending requests)", ("httpx", "httpcore", "write_lines", "_post_lines")),
    ("MQTT (paho, acknowledgements)", ("paho", "core/mqtt.py")),
    ("ingestor (batching, metrics)", ("ingestor.py", "ingest_metrics", "prometheus_client")),
    ("asyncio event loop, thread hand-offs", ("asyncio", "concurrent/futures", "threading.py")),
)


def stage_of(stack: list[str], stages: tuple[tuple[str, tuple[str, ...]], ...] = STAGES) -> str:
    for stage, marks in stages:
        if stage.startswith("waiting") and any(m in frame for frame in stack for m in marks):
            return stage
        if stage.startswith("idle") and stack and any(m in stack[-1] for m in marks):
            return stage
    for frame in reversed(stack):
        for stage, marks in stages:
            if any(m in frame for m in marks):
                return stage
    return "other"


def breakdown(path: Path, stages: tuple[tuple[str, tuple[str, ...]], ...] = STAGES) -> dict[str, float]:
    counts: Counter[str] = Counter()
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        stack_text, _, n = line.rpartition(" ")
        if not stack_text or not n.isdigit():
            continue
        counts[stage_of(stack_text.split(";"), stages)] += int(n)
    total = sum(counts.values()) or 1
    return {stage: round(100 * c / total, 1) for stage, c in counts.most_common()}


def hub_breakdown(path: Path) -> dict[str, float]:
    """The hub ingestor's busy time by stage (shares of the samples not waiting), from a py-spy ``--idle --threads``
    profile, plus ``requests_in_flight``: write requests waiting for InfluxDB's answer, on average over the run
    (each sample of the event loop's thread is one tick of the clock)."""
    counts: Counter[str] = Counter()
    ticks = 0
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        stack_text, _, n = line.rpartition(" ")
        if not stack_text or not n.isdigit():
            continue
        stack = stack_text.split(";")
        if "MainThread" in stack[0]:
            ticks += int(n)
        counts[stage_of(stack, HUB_STAGES)] += int(n)
    waiting = counts.pop(HUB_STAGES[0][0], 0)
    counts.pop(HUB_STAGES[1][0], 0)
    busy = sum(counts.values()) or 1
    out = {stage: round(100 * c / busy, 1) for stage, c in counts.most_common()}
    out["requests_in_flight"] = round(waiting / (ticks or 1), 2)
    return out


def main() -> None:
    if sys.argv[2:] == ["--hub"]:
        shares = hub_breakdown(Path(sys.argv[1]))
        for stage, pct in shares.items():
            print(f"{pct:6.2f}{'' if stage == 'requests_in_flight' else ' %'}  {stage}")
        print(json.dumps(shares))
        return
    shares = breakdown(Path(sys.argv[1]))
    for stage, pct in shares.items():
        print(f"{pct:5.1f} %  {stage}")
    print(json.dumps(shares))


if __name__ == "__main__":
    main()
