"""MQTT topic layout of the wire contract: ``mdh/v1/{member}/{gateway}/samples`` for data and
``.../status`` for birth and last-will messages. The member is the first level so that the broker
ACL can let each login write its own subtree only."""

from __future__ import annotations

from .errors import WireError
from .model import MEMBER_RE, PSEUDONYM_RE

ROOT = "mdh/v1"
SAMPLES = "samples"
STATUS = "status"


#: What the hub subscribes to: every gateway's data and status messages.
SAMPLES_FILTER = f"{ROOT}/+/+/{SAMPLES}"
STATUS_FILTER = f"{ROOT}/+/+/{STATUS}"


def shared_filter(group: str | None, topic_filter: str) -> str:
    """``topic_filter`` as an MQTT 5 shared subscription of ``group`` (several ingestors split the
    messages between them), or unchanged without a group."""
    return f"$share/{group}/{topic_filter}" if group else topic_filter


def samples_topic(member: str, gateway: str) -> str:
    return f"{ROOT}/{member}/{gateway}/{SAMPLES}"


def status_topic(member: str, gateway: str) -> str:
    return f"{ROOT}/{member}/{gateway}/{STATUS}"


def member_filter(member: str) -> str:
    """The subtree a member's login may write (broker ACL ``pattern write mdh/v1/%u/#``)."""
    return f"{ROOT}/{member}/#"


def parse_topic(topic: str) -> tuple[str, str, str]:
    """Split ``mdh/v1/{member}/{gateway}/{kind}`` into its parts or raise ``WireError``."""
    parts = topic.split("/")
    if len(parts) != 5 or f"{parts[0]}/{parts[1]}" != ROOT:
        raise WireError(f"topic {topic!r} is not of the form {ROOT}/{{member}}/{{gateway}}/{{kind}}", code="topic")
    member, gateway, kind = parts[2], parts[3], parts[4]
    if not MEMBER_RE.fullmatch(member):
        raise WireError(f"topic member {member!r} is not a member pseudonym", code="topic")
    if not PSEUDONYM_RE.fullmatch(gateway):
        raise WireError(f"topic gateway {gateway!r} is not a gateway pseudonym", code="topic")
    if kind not in (SAMPLES, STATUS):
        raise WireError(f"topic kind {kind!r} is neither {SAMPLES!r} nor {STATUS!r}", code="topic")
    return member, gateway, kind
