"""What the routes share: settings, store, register, tokens, audit log, metrics, privacy ledger, clock."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from metalldaten.register import Register
from storage import Store

from .audit import AuditLog
from .disclosure import Rules
from .dp import BudgetLedger
from .metrics import ApiMetrics
from .settings import ApiSettings
from .tokens import TokenStore


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

    @property
    def rules(self) -> Rules:
        s = self.settings
        return Rules(
            min_contributors=s.min_contributors,
            max_share_largest=s.max_share_largest,
            max_share_two_largest=s.max_share_two_largest,
            release_delay=timedelta(days=s.release_delay_days),
        )
