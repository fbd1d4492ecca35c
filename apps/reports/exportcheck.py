"""Defence in depth: re-run the masking detectors over a diagnostic export before it leaves.

Everything in a report was masked at intake already, so a hit here means something slipped past:
a line stored before a detector existed, a row written around the intake, a receiver echoing a
secret into a delivery error. Each hit is masked again (the export never carries it) and counted
(``ReportRun.violations`` -> ``monitoring_masking_violation_total``); the caller logs where it was,
never what it was.

Masking is idempotent on masked text (``[MASKED:kind]`` is no secret to any detector), so a hit is
a marker that the second pass added: counted by kind from the markers before and after.
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from apps.ingest.masking import Masker, get_masker

_MARKER = re.compile(r"\[MASKED:([a-z0-9_]+)\]")


@dataclass
class CheckResult:
    value: Any                              # the checked value, masked again where needed
    hits: Counter = field(default_factory=Counter)  # kind -> markers the check added

    @property
    def total(self) -> int:
        return sum(self.hits.values())


def _markers(value: Any, out: Counter) -> None:
    if isinstance(value, str):
        out.update(_MARKER.findall(value))
    elif isinstance(value, dict):
        for item in value.values():
            _markers(item, out)
    elif isinstance(value, list):
        for item in value:
            _markers(item, out)


def recheck(value: Any, masker: Masker | None = None) -> CheckResult:
    """``value`` (str, dict, list, numbers) run through every detector again; secret-named keys
    are masked whole, as at intake. Returns the same object when nothing was found."""
    masker = masker or get_masker()
    masked = masker.mask_value(value)
    if masked == value:
        return CheckResult(value=value)
    before, after = Counter(), Counter()
    _markers(value, before)
    _markers(masked, after)
    hits = after - before
    if not hits:  # masked whole under a secret-named key that already held a marker: still a change
        hits = Counter({"field": 1})
    return CheckResult(value=masked, hits=hits)
