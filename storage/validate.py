"""What the ingestor accepts (pure): the wire contract, topic and payload agreeing, a registered active member."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from operator import attrgetter

from wire import Batch, Status, WireError, decode_batch, decode_status, parse_topic

_ASSET = attrgetter("asset")

#: Answers whether a member pseudonym may send now (the register's ``is_active``).
MemberCheck = Callable[[str], bool]


@dataclass(frozen=True, slots=True)
class Refused:
    code: str
    reason: str


@dataclass(frozen=True, slots=True)
class Accepted:
    member: str
    gateway: str
    batch: Batch | None = None
    status: Status | None = None
    #: The distinct assets of the batch (for the member quota, storage.quota).
    assets: frozenset[str] = frozenset()


#: Why a retained message is refused.
RETAINED_REASON = (
    "retained message: gateways never publish retained, and a retained message is replayed by the broker to "
    "every new subscriber, so it is not live data of a gateway; the hub stores only live messages"
)


#: Samples that would leave the store's retention within this time are refused with the older ones: the next
#: hourly housekeeping would delete them.
EXPIRY_MARGIN_NS = 3600 * 10**9


def accepted_window(now_ns: int, *, retention_ns: int | None, max_ahead_s: float) -> tuple[int | None, int]:
    """The oldest and the newest sample timestamp accepted at ``now_ns``: the store's retention of raw data less
    :data:`EXPIRY_MARGIN_NS` (``None``: no bound), and the hub's clock plus ``max_ahead_s``."""
    earliest = None if retention_ns is None else now_ns - retention_ns + EXPIRY_MARGIN_NS
    return earliest, now_ns + int(max_ahead_s * 1e9)


def check_message(
    topic: str,
    payload: bytes,
    is_active: MemberCheck,
    *,
    max_payload_bytes: int,
    retained: bool = False,
    earliest_ns: int | None = None,
    latest_ns: int | None = None,
) -> Accepted | Refused:
    """Decide about one MQTT message; never raises on any input.

    ``retained`` is the MQTT retain flag of the message as delivered (see
    :attr:`core.mqtt.Message.retain`); a retained message is refused. ``latest_ns``: the newest sample timestamp
    accepted (the hub's clock plus ``max_ahead_s``); a batch with a later one is refused (``future``). ``earliest_ns``:
    the oldest the store keeps (its raw retention); a batch with an earlier one is refused (``expired``).
    """
    if retained:
        return Refused("retained", RETAINED_REASON)
    try:
        member, gateway, kind = parse_topic(topic)
    except WireError as exc:
        return Refused(exc.code, exc.reason)
    if not is_active(member):
        return Refused("member", f"member {member} is not an active member in the register")
    try:
        if kind == "status":
            status = decode_status(payload)
            found: tuple[str, str] = (status.member, status.gateway)
        else:
            batch = decode_batch(
                payload, max_payload_bytes=max_payload_bytes, earliest_ns=earliest_ns, latest_ns=latest_ns
            )
            found = (batch.member, batch.gateway)
    except WireError as exc:
        return Refused(exc.code, exc.reason)
    except Exception as exc:
        return Refused("decode", f"payload could not be decoded: {type(exc).__name__}")
    if found[0] != member:
        return Refused("member_mismatch", f"payload member {found[0][:40]!r} does not match topic member {member}")
    if found[1] != gateway:
        return Refused("gateway_mismatch", f"payload gateway {found[1][:40]!r} does not match the topic's")
    if kind == "status":
        return Accepted(member, gateway, status=status)
    return Accepted(member, gateway, batch=batch, assets=frozenset(map(_ASSET, batch.samples)))
