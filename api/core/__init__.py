"""The API's pure analytics core: KPIs from rollups, benchmark cells, disclosure control and
differential privacy. Frames and numbers in, frames and numbers out: no HTTP, no store, no clock
of its own, so every rule can be tested (and attacked) without a server."""
