"""The hub broker's templates (``mosquitto.conf``, ``dynamic-security.json``), shipped as package data
so that ``metalldaten broker …`` finds them in an installed wheel as in a source checkout."""
