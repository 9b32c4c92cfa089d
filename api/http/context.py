"""What the routes share: settings, store, register, tokens, audit log, metrics, privacy ledger, clock."""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from core.auditlog import AuditLog
from core.register import Register
from storage import Store

from ..core.disclosure import Rules
from ..core.dp import BudgetLedger
from ..settings import ApiSettings
from ..tokens import TokenStore
from .metrics import ApiMetrics


@dataclass(slots=True, kw_only=True)
class AppContext:
    settings: ApiSettings
    store: Store
    register_provider: Callable[[], Register]
    clock: Callable[[], datetime]
    tokens: TokenStore
    audit: AuditLog
    metrics: ApiMetrics
    ledger: BudgetLedger
    rng: random.Random = field(default_factory=random.SystemRandom)

    #: Secret of the keyed noise on benchmark figures (see :func:`api.core.disclosure.publish`).
    cell_key: Callable[[], bytes] = lambda: b""
    #: One release at a time per process: a cell is computed and frozen once.
    release_lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def rules(self) -> Rules:
        s = self.settings
        return Rules(
            min_contributors=s.min_contributors,
            max_share_largest=s.max_share_largest,
            max_share_two_largest=s.max_share_two_largest,
            p_percent=s.p_percent,
            noise=s.cell_noise,
            significant_digits=s.significant_digits,
            release_delay=timedelta(days=s.release_delay_days),
            release_delays={k: timedelta(days=d) for k, d in s.release_delay_days_by_kpi.items()},
        )
