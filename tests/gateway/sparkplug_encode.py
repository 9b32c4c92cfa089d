"""The Sparkplug B encoder for tests: the demo's (written independently of the gateway's decoder)."""

from metalldaten.demo.sparkplug import encode_metric, encode_payload

__all__ = ["encode_metric", "encode_payload"]
