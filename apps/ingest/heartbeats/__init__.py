"""Heartbeats (DESIGN 10): jobs ping ``POST /api/v1/heartbeats/<name>``; a missed ping raises an
alert (source ``heartbeat``), the next ping resolves it.

``params`` parses a ping (pure), ``sql`` is the ping's one-UPDATE fast path and its portable twin,
``services`` writes (ping, delete, the sweep of missed heartbeats), ``selectors`` reads, ``views``
is the API.
"""
