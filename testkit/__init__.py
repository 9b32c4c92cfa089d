"""What tests and benchmarks share (not part of the installed product):

* :mod:`testkit.servers`: real Mosquitto, InfluxDB 1.x and VictoriaMetrics on free loopback
  ports; a missing binary raises :class:`~testkit.servers.ServerMissing`;
* :mod:`testkit.mqtt`: a gateway-like MQTT publisher, batches, an in-test register, ingest settings;
* :mod:`testkit.waiting`: :func:`~testkit.waiting.wait_until`, the one bounded wait for a condition;
* :mod:`testkit.machines`: a real asyncua server that behaves like a factory's machines;
* :mod:`testkit.misbehaving`: the same server, made to stall monitored items or report queue overflows;
* :mod:`testkit.historian`: the same server with historised nodes (HistoryRead, continuation points);
* :mod:`testkit.alarms`: events and alarms on it (event types, severities, condition states);
* :mod:`testkit.threaded`: a server in its own thread and event loop.
"""
