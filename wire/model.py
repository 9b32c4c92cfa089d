"""The sample and batch model of the wire contract: what a gateway sends and the hub accepts.

Structs are ``msgspec`` structs encoded as arrays, so a batch of thousands of
samples stays compact on the wire and cheap to encode at the gateway.
"""

from __future__ import annotations

import enum
import re

import msgspec

#: Wire schema version. Bump on any incompatible change; the hub accepts only
#: versions it lists in :data:`SUPPORTED_SCHEMAS`.
SCHEMA_VERSION = 1
SUPPORTED_SCHEMAS = frozenset({1})

Value = float | int | bool | str

#: Longest string value a sample may carry (states, short codes).
MAX_STRING_VALUE = 64

#: Member pseudonyms are assigned by the trustee (``m-`` + hex); all other
#: identifiers are keyed hashes made at the gateway (a letter, ``-``, hex). Check with ``fullmatch``: with
#: ``match`` the ``$`` also accepts a trailing newline. (The patterns themselves are also used by pydantic.)
MEMBER_RE = re.compile(r"^m-[0-9a-f]{6,32}$")
PSEUDONYM_RE = re.compile(r"^[a-z]-[0-9a-f]{8,32}$")
KEY_ID_RE = re.compile(r"^[0-9a-zA-Z_.-]{1,32}$")


class Quality(enum.IntEnum):
    """OPC UA status code class, reduced to three levels."""

    GOOD = 0
    UNCERTAIN = 1
    BAD = 2

    @property
    def label(self) -> str:
        return self.name.lower()


class Sample(msgspec.Struct, array_like=True, frozen=True, gc=False):
    """One value of one canonical signal of one asset at one instant.

    ``ts`` is nanoseconds since the Unix epoch, UTC: the source timestamp when the
    source has one, else the gateway's receive time.
    """

    ts: int
    asset: str
    asset_class: str
    signal: str
    value: Value
    quality: int = Quality.GOOD


class Batch(msgspec.Struct, frozen=True, gc=False):
    """A batch of samples of one member, sent by one gateway.

    ``batch_id`` is unique per batch; the hub uses it (and the natural key of each
    sample) to make redelivery harmless.
    """

    schema: int
    batch_id: str
    member: str
    gateway: str
    key_id: str
    sent_ns: int
    samples: list[Sample]


class Status(msgspec.Struct, frozen=True):
    """Birth / death message on ``mdh/v1/{member}/{gateway}/status``."""

    schema: int
    member: str
    gateway: str
    state: str  # "online" | "offline"
    ts_ns: int
