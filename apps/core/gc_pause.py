"""``gc_paused()``: hold off Python's cyclic garbage collector over one bounded piece of hot work.

Intake and detection build tens of thousands of short-lived, acyclic objects per request or batch
(dicts, lists, events). Their allocations trigger collections that only walk them and the
process's long-lived objects (Django, compiled rules: ~100k+), and find nothing to free: on the
2-core box ~40% of a metrics body's parse (bench/metrics.py), and in micro-benchmarks with
Django loaded 17% of a 1,000-event log body's parse-to-payload and 60% of a batch's decode.
Reference counting still frees everything as usual; only
cycles wait, and the collector runs as soon as the work ends.

The work must be bounded (one request body, one batch): the limits (INGEST_MAX_EVENTS,
METRICS_MAX_SAMPLES, ...) make it so. A detect task's pause also spans its first attempts' sends,
bounded by DELIVERY_STRAGGLER_SECONDS (sends still running then are recorded later, by the
straggler thread, with the collector on). Not re-entrant across threads by design: a nested or
concurrent pause leaves the switch to whoever turned it off, so the collector is off at most
as long as the outermost pause.
"""
from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def gc_paused() -> Iterator[None]:
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
