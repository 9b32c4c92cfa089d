"""Pieces every part of the hub shares: configuration files, the member register, the error root,
back-off and the paho→asyncio MQTT bridge. Imports nothing of ours except the wire contract."""
