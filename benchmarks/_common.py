"""What every benchmark shares: the import path, one percentile definition and CPU sampling.

Importing this module puts the repository root first on ``sys.path``, so that the
product packages and :mod:`testkit` (which is not installed) are importable, and the
product's ``api`` package wins over this folder's ``api.py``. Import it before any of
the project's packages.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent


def _set_up_path() -> None:
    rest = [p for p in sys.path if Path(p or ".").resolve() != ROOT]
    sys.path[:] = [str(ROOT), *rest]


_set_up_path()


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``values`` by nearest rank; NaN for no values."""
    if not values:
        return math.nan
    xs = sorted(values)
    return float(xs[min(len(xs) - 1, round(q * (len(xs) - 1)))])


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far (from /proc; 0 if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_py_spy(pid: int, out: Path, *, rate: int, flags: Sequence[str] = ()) -> subprocess.Popen[bytes]:
    """py-spy recording ``pid`` at ``rate`` Hz into ``out`` (raw collapsed stacks), with extra ``flags``."""
    exe = str(Path(sys.executable).with_name("py-spy"))
    return subprocess.Popen(
        [exe, "record", "-p", str(pid), "-f", "raw", "-r", str(rate), *flags, "-o", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
