"""What every benchmark shares: the import path, one percentile definition and CPU sampling.

Importing this module puts the repository root first on ``sys.path``, so that the
product packages and :mod:`testkit` (which is not installed) are importable, and the
product's ``api`` package wins over this folder's ``api.py``. Import it before any of
the project's packages.
"""

from __future__ import annotations

import math
import os
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
