"""The wire contract between gateways and the hub: sample model, signal catalogue,
payload codec and topic layout. Imported by both sides; depends on neither."""

from .catalog import ASSET_CLASSES, DOWNTIME_REASONS, MACHINE_STATES, SIGNALS, SignalKind, SignalSpec, signal
from .codec import (
    MAX_DECODED_BYTES,
    MAX_PAYLOAD_BYTES,
    Codec,
    decode_batch,
    decode_status,
    encode_batch,
    encode_status,
    sample_problem,
    validate_batch,
    validate_status,
)
from .errors import InvalidBatch, PayloadTooLarge, UnsupportedSchema, WireError
from .model import SCHEMA_VERSION, Batch, Quality, Sample, Status, Value
from .topics import parse_topic, samples_topic, status_topic

__all__ = [
    "ASSET_CLASSES",
    "DOWNTIME_REASONS",
    "MACHINE_STATES",
    "MAX_DECODED_BYTES",
    "MAX_PAYLOAD_BYTES",
    "SCHEMA_VERSION",
    "SIGNALS",
    "Batch",
    "Codec",
    "InvalidBatch",
    "PayloadTooLarge",
    "Quality",
    "Sample",
    "SignalKind",
    "SignalSpec",
    "Status",
    "UnsupportedSchema",
    "Value",
    "WireError",
    "decode_batch",
    "decode_status",
    "encode_batch",
    "encode_status",
    "parse_topic",
    "sample_problem",
    "samples_topic",
    "signal",
    "status_topic",
    "validate_batch",
    "validate_status",
]
