"""Benchmark of the gateway pipeline: normalise + pseudonymise + encode, no I/O.

Raw readings with clear identifiers (200 machines x 5 local signals, unit conversion, rounding,
state mapping) go through the gateway's normalise step (policy, keyed pseudonyms, watermarks) and
are encoded into wire batches of 2,000 samples (MessagePack + zstd), as the gateway seals them.
Baseline in the same run: plain encoding of the same, prebuilt wire samples. One core (the process
is pinned to CPU 0 where the OS allows it). Target: at least 200k samples/s.

Run: ``.venv/bin/python benchmarks/gateway_pipeline.py``. The last line of output is JSON.
"""

from __future__ import annotations

import json
import os
import time

import _common  # noqa: F401  (the import path)

from gateway.normalise import Normaliser, Reading
from gateway.policy import PolicySettings, compile_policy
from gateway.pseudonymise import MemberKey, Pseudonymiser
from wire import Batch, Codec, Sample

N = 400_000
BATCH = 2_000
ROUNDS = 3
T0 = 1_790_000_000 * 10**9

POLICY = PolicySettings(
    asset_classes={"DMU 50": "cnc_milling"},
    signals={
        "Wirkleistung": {"canonical": "power_kw", "unit": "W", "round": 2},
        "Energie": {"canonical": "energy_kwh", "unit": "Wh", "round": 3},
        "Teile": {"canonical": "parts_total"},
        "Temp": {"canonical": "temperature_c", "clip": (-40.0, 400.0), "bin": 0.5},
        "Betriebsart": {"canonical": "state", "states": {"0": "off", "1": "idle", "2": "running"}},
    },
)


def readings() -> list[Reading]:
    machines = [f"Maschine-SN-{10000 + i}" for i in range(200)]
    values = {"Wirkleistung": 12345.678, "Energie": 9_876_543.0, "Teile": 1234, "Temp": 36.6, "Betriebsart": 2}
    out = []
    for i in range(N):
        m = machines[i % 200]
        sig = list(values)[(i // 200) % 5]
        v = values[sig]
        out.append(
            Reading(
                m, sig, v + i if not isinstance(v, int) or sig == "Teile" else v, T0 + i * 1000, source_ns=T0 + i * 1000
            )
        )
    return out


def pipeline(rs: list[Reading]) -> float:
    key = MemberKey(key_id="k1", secret=os.urandom(32))
    n = Normaliser(compile_policy(POLICY), Pseudonymiser(key), asset_classes={})
    codec = Codec()
    normalise = n.normalise
    t = time.perf_counter()
    buf: list[Sample] = []
    sent = 0
    for r in rs:
        s = normalise(r)
        if s.__class__ is Sample:
            buf.append(s)  # type: ignore[arg-type]
            if len(buf) == BATCH:
                codec.encode(Batch(1, f"batch{sent:08d}", "m-7f3a9c", "g-0123456789abcdef", "k1", T0, buf))
                sent += len(buf)
                buf = []
    elapsed = time.perf_counter() - t
    assert sent + len(buf) == len(rs), n.dropped
    return len(rs) / elapsed


def baseline(samples: list[Sample]) -> float:
    codec = Codec()
    t = time.perf_counter()
    for i in range(0, len(samples), BATCH):
        codec.encode(Batch(1, f"batch{i:08d}", "m-7f3a9c", "g-0123456789abcdef", "k1", T0, samples[i : i + BATCH]))
    return len(samples) / (time.perf_counter() - t)


def main() -> None:
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {0})
    rs = readings()
    prebuilt = [Sample(r.source_ns or 0, "a-0123456789abcdef", "cnc_milling", "power_kw", 12.34) for r in rs]
    pipe = max(pipeline(rs) for _ in range(ROUNDS))
    base = max(baseline(prebuilt) for _ in range(ROUNDS))
    print(f"pipeline (normalise + pseudonymise + encode): {pipe:,.0f} samples/s")
    print(f"baseline (plain encode of prebuilt samples):  {base:,.0f} samples/s")
    print(
        json.dumps(
            {
                "samples_per_s": round(pipe),
                "baseline_samples_per_s": round(base),
                "samples": N,
                "batch": BATCH,
                "target_samples_per_s": 200_000,
                "cores": 1,
            }
        )
    )


if __name__ == "__main__":
    main()
