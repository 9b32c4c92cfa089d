"""Reload: apply a changed configuration to a running gateway without a restart.

``SIGHUP`` (or ``metalldaten gateway reload --config FILE``, which checks the file first and then signals
the gateway named by the pid file beside its buffer) makes the gateway read its configuration file again:

* a file that does not load (wrong key, wrong value) is refused with the error, which is logged once,
  counted (``mdh_gateway_reloads_total{result="refused"}``) and shown in ``/health`` (degraded, with the
  reason) until a reload succeeds; the running configuration continues unchanged;
* sources are matched by kind and name: an added source starts, a removed one stops, a source whose
  section changed (nodes added or removed, other intervals) restarts; an unchanged source keeps running,
  its session and subscriptions untouched;
* ``[policy]`` and ``[[assets]]`` apply to every source's next reading, without restarting any;
* ``[identity]``, ``[buffer]``, ``[uplink]`` and ``[health]`` cannot change while running (the key, the
  buffer file and the hub connection are the gateway's identity and its data): a file that changes them
  is refused, naming the sections; they take effect at the next start.

The disk buffer is never touched by a reload: what is buffered stays buffered and is sent as before.
This module is the pure part (what to do) and the pid file; :class:`gateway.runner.Gateway` does it.
"""

from __future__ import annotations

import contextlib
import os
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import GatewaySettings
from .errors import ReloadRefused

#: Sections a running gateway cannot change.
FIXED_SECTIONS = ("identity", "buffer", "uplink", "health")
#: Sections holding sources, by source kind.
SOURCE_SECTIONS = ("opcua", "mqtt")


@dataclass(frozen=True, slots=True)
class ReloadPlan:
    """What a reload does; sources as (kind, name)."""

    start: tuple[tuple[str, str], ...]
    stop: tuple[tuple[str, str], ...]
    keep: tuple[tuple[str, str], ...]
    policy_changed: bool

    @property
    def changes(self) -> bool:
        return bool(self.start or self.stop or self.policy_changed)


def _sources(settings: GatewaySettings) -> dict[tuple[str, str], Any]:
    return {(kind, s.name): s for kind in SOURCE_SECTIONS for s in getattr(settings, kind)}


def plan_reload(old: GatewaySettings, new: GatewaySettings) -> ReloadPlan:
    """What changes from ``old`` to ``new``; :class:`ReloadRefused` if a fixed section changed.

    A source whose section changed is both stopped and started (restarted)."""
    fixed = [name for name in FIXED_SECTIONS if getattr(old, name) != getattr(new, name)]
    if fixed:
        raise ReloadRefused(
            f"the sections {', '.join('[' + f + ']' for f in fixed)} cannot change while the gateway runs; "
            "restart it to apply them"
        )
    before, after = _sources(old), _sources(new)
    changed = {k for k in before.keys() & after.keys() if before[k] != after[k]}
    return ReloadPlan(
        start=tuple(k for k in after if k not in before or k in changed),
        stop=tuple(k for k in before if k not in after or k in changed),
        keep=tuple(k for k in after if k in before and k not in changed),
        policy_changed=old.policy != new.policy or old.assets != new.assets,
    )


def pid_file(settings: GatewaySettings) -> Path:
    """Where a running gateway writes its process id: beside its disk buffer."""
    return settings.buffer.path.with_name(settings.buffer.path.name + ".pid")


def write_pid(path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(f"{os.getpid()}\n", encoding="ascii")
    tmp.replace(path)


def remove_pid(path: Path) -> None:
    with contextlib.suppress(OSError):
        if path.read_text(encoding="ascii").strip() == str(os.getpid()):
            path.unlink()


def signal_reload(settings: GatewaySettings) -> int:
    """Send SIGHUP to the gateway running with ``settings``; its process id. :class:`ReloadRefused` if none runs."""
    path = pid_file(settings)
    try:
        pid = int(path.read_text(encoding="ascii").strip())
        os.kill(pid, signal.SIGHUP)
    except (OSError, ValueError):
        raise ReloadRefused(f"no gateway runs with this configuration (no live process in {path})") from None
    return pid
