"""Inbound alerts and events from other systems (DESIGN 10): Alertmanager, Grafana, the event API.

Each source's module turns its request body into ``Entry`` objects (pure, no Django database);
``intake`` stores them as one ``IngestBatch`` of the source's kind; ``apply`` (in the detect
worker) turns each entry into fire / absorb / resolve through ``apps.alerts.external``.
"""
