"""Mask secrets and personal data in events before anything is stored or sent.

Rules live in ``fixtures/masking_rules.yaml`` (format documented there). Matches become
``[MASKED:<kind>]``; a rule with a ``secret`` group replaces only that group, so
``password=hunter2`` becomes ``password=[MASKED:password]``.

Linear time: every pattern is RE2 (no backtracking). One RE2 set pass over an event (message and
field values joined) tells which rules can match; most events match none and cost just that pass.
Only the matching rules then run, and their Python checks (checksums, boundaries) see candidate
matches only. ``mask_events`` charges the CPU it spends to a per-request budget and raises
``MaskingBudgetExceeded`` past it, so no body can hold a worker.

Failure policy: fail closed. A missing or malformed rules file raises ``MaskingRuleError`` at
load time, so ingestion errors out (503) instead of storing unmasked data. Masking itself never
raises on input text (only ``MaskingBudgetExceeded``, by design).

Hot path: ``get_masker()`` caches the compiled rules per (path, mtime) and costs one ``stat``;
call it once per batch, then ``masker.mask_events`` (or ``mask_event`` per event).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from collections.abc import Iterable
from typing import Any

import re2
import yaml

from apps.core.readable import exception_text
from apps.ingest.masking_checks import CHECKS, Check, Span, luhn_ok, plain
from apps.ingest.normalize import Event

__all__ = ["DEFAULT_RULES_PATH", "Masker", "MaskingBudgetExceeded", "MaskingRuleError", "compile_rules",
           "get_masker", "luhn_ok", "mask_event", "mask_text"]

DEFAULT_RULES_PATH = Path(__file__).resolve().parents[2] / "fixtures" / "masking_rules.yaml"

_RULE_KEYS = frozenset({"kind", "pattern", "validator", "enabled"})
_FIELD_KEY_KEYS = frozenset({"kind", "suffixes", "names"})
_KIND_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_")
_QUOTES = (b'\\"', b'"', b"'")
# Integers this large may be card, phone or ID numbers; smaller ones are counts and ids.
_NUMBER_FLOOR = 10**10
# The RE2 set's DFA memory: enough that it never runs out on any text (it would report "no match").
_SET_MAX_MEM = 64 << 20
# Text bytes masked between two reads of the CPU clock (each read is a ~1 us syscall).
_BUDGET_CHUNK_BYTES = 16 * 1024
_KEY_CACHE_MAX = 10_000


class MaskingRuleError(ValueError):
    """The masking rules file is missing or invalid."""


class MaskingBudgetExceeded(Exception):
    """Masking one request's events took more CPU than its budget."""

    def __init__(self, budget_ms: int, spent_ms: float, events_done: int) -> None:
        super().__init__(f"masking took more than {budget_ms} ms of CPU (after {events_done} events)")
        self.budget_ms = budget_ms
        self.spent_ms = spent_ms
        self.events_done = events_done


class _Budget:
    """CPU time of this thread since creation, read once per ``_BUDGET_CHUNK_BYTES`` of text."""

    __slots__ = ("budget_ms", "limit_ns", "start_ns", "pending", "events_done")

    def __init__(self, budget_ms: int) -> None:
        self.budget_ms = budget_ms
        self.limit_ns = budget_ms * 1_000_000
        self.start_ns = time.thread_time_ns()
        self.pending = 0
        self.events_done = 0

    def charge(self, nbytes: int) -> None:
        self.pending += nbytes
        if self.pending >= _BUDGET_CHUNK_BYTES:
            self.pending = 0
            self.check()

    def check(self) -> None:
        spent = time.thread_time_ns() - self.start_ns
        if spent > self.limit_ns:
            raise MaskingBudgetExceeded(self.budget_ms, spent / 1e6, self.events_done)


@dataclass(slots=True, frozen=True)
class MaskRule:
    kind: str
    regex: Any  # a compiled re2 pattern
    check: Check
    secret_group: int  # index of the "secret" group; 0 (the whole match) if none

    def apply(self, data: bytes) -> bytes:
        """``data`` (UTF-8) with this rule's matches masked; the same object if none."""
        spans: list[Span] = []
        pos, last_end, n = 0, 0, len(data)
        while pos <= n:
            m = self.regex.search(data, pos)
            if m is None:
                break
            for span in self.check(data, m.span(), m.span(self.secret_group)):
                if span[0] >= last_end:
                    spans.append(span)
                    last_end = span[1]
            pos = max(m.end(), last_end, m.start() + 1)
        if not spans:
            return data
        marker = b"[MASKED:" + self.kind.encode() + b"]"
        out, prev = [], 0
        for start, end in spans:
            out.append(data[prev:start])
            out.append(_quoted(data[start:end], marker))
            prev = end
        out.append(data[prev:])
        return b"".join(out)


def _quoted(secret: bytes, marker: bytes) -> bytes:
    for q in _QUOTES:
        if len(secret) > 2 * len(q) and secret.startswith(q) and secret.endswith(q):
            return q + marker + q
    return marker


@dataclass(slots=True, frozen=True)
class FieldKeyRule:
    kind: str
    suffixes: tuple[str, ...]
    names: frozenset[str]


def _normalize_key(key: str) -> str:
    return key.lower().replace("_", "").replace("-", "").replace(".", "").replace(" ", "")


class Masker:
    """Compiled masking rules; immutable (but for a key cache) and safe to share between threads."""

    def __init__(self, rules: list[MaskRule], field_keys: list[FieldKeyRule]) -> None:
        self.rules = tuple(rules)
        self.field_keys = tuple(field_keys)
        self._set = None
        if self.rules:
            options = re2.Options()
            options.max_mem = _SET_MAX_MEM
            self._set = re2.Set.SearchSet(options)
            for rule in self.rules:
                self._set.Add(rule.regex.pattern)
            self._set.Compile()
        # Field names repeat from event to event: classify each once.
        self._key_kinds: dict[str, str | None] = {}

    # --- text -----------------------------------------------------------------------------------

    def mask_text(self, text: str) -> str:
        """``text`` with every enabled rule applied in file order."""
        return self._mask_text(text, None)

    def _mask_text(self, text: str, budget: _Budget | None) -> str:
        if not text or self._set is None:
            return text
        data = text.encode("utf-8", "surrogatepass")
        if budget is not None:
            budget.charge(len(data))
        hits = self._set.Match(data)
        if not hits:
            return text
        masked = data
        for i in sorted(hits):
            masked = self.rules[i].apply(masked)
        return text if masked is data else masked.decode("utf-8", "surrogatepass")

    # --- fields ---------------------------------------------------------------------------------

    def key_kind(self, key: str) -> str | None:
        """The kind a field named ``key`` is masked as whole (any case style), or None."""
        kind = self._key_kinds.get(key, "")
        if kind != "":
            return kind
        norm = _normalize_key(key)
        kind = next((r.kind for r in self.field_keys if norm in r.names or norm.endswith(r.suffixes)), None)
        if len(self._key_kinds) >= _KEY_CACHE_MAX:
            self._key_kinds.clear()
        self._key_kinds[key] = kind
        return kind

    def mask_value(self, value: Any) -> Any:
        """Mask strings inside ``value`` (str, dict, list, numbers) recursively; returns a copy."""
        return self._mask_value(value, None)

    def _mask_value(self, value: Any, budget: _Budget | None) -> Any:
        if isinstance(value, str):
            return self._mask_text(value, budget)
        if isinstance(value, dict):
            out = {}
            for key, item in value.items():
                kind = self.key_kind(key) if isinstance(key, str) else None
                if kind is not None and item is not None and not isinstance(item, bool):
                    out[key] = f"[MASKED:{kind}]"
                else:
                    out[key] = self._mask_value(item, budget)
            return out
        if isinstance(value, list):
            return [self._mask_value(v, budget) for v in value]
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= _NUMBER_FLOOR:
            text = str(value)
            masked = self._mask_text(text, budget)
            return value if masked is text else masked
        return value

    def _needs_masking(self, value: Any, parts: list[str]) -> bool:
        """Collect ``value``'s strings into ``parts``; True at once if a key is secret-named."""
        if isinstance(value, str):
            parts.append(value)
        elif isinstance(value, dict):
            for key, item in value.items():
                if (isinstance(key, str) and item is not None and not isinstance(item, bool)
                        and self.key_kind(key) is not None):
                    return True
                if self._needs_masking(item, parts):
                    return True
        elif isinstance(value, list):
            for item in value:
                if self._needs_masking(item, parts):
                    return True
        elif isinstance(value, int) and not isinstance(value, bool) and abs(value) >= _NUMBER_FLOOR:
            parts.append(str(value))
        return False

    # --- events ---------------------------------------------------------------------------------

    def mask_event(self, event: Event) -> Event:
        """``event`` with message and field values masked (trace_id, ids untouched): a copy if
        anything was masked, else the same event object (never mutated)."""
        return self._mask_event(event, None)

    def _mask_event(self, event: Event, budget: _Budget | None) -> Event:
        parts = [event.message]
        if not self._needs_masking(event.fields, parts):
            data = "\n".join(parts).encode("utf-8", "surrogatepass") if len(parts) > 1 else None
            if data is None:
                message = self._mask_text(event.message, budget)
                return event if message is event.message else replace(event, message=message)
            if budget is not None:
                budget.charge(len(data))
            if self._set is None or not self._set.Match(data):
                return event
        return replace(event, message=self._mask_text(event.message, budget),
                       fields=self._mask_value(event.fields, budget))

    def mask_events(self, events: Iterable[Event], *, budget_ms: int | None = None) -> list[Event]:
        """Masked copies of ``events``; raise ``MaskingBudgetExceeded`` as soon as their masking
        has used more than ``budget_ms`` of this thread's CPU (checked every 16 KB of text and
        after the last event)."""
        budget = _Budget(budget_ms) if budget_ms else None
        out = []
        for event in events:
            out.append(self._mask_event(event, budget))
            if budget is not None:
                budget.events_done += 1
        if budget is not None:
            budget.check()
        return out


# --- loading ------------------------------------------------------------------------------------

def compile_rules(doc: object, source: str = "<rules>") -> Masker:
    """Build a ``Masker`` from the parsed YAML document; raise ``MaskingRuleError`` if invalid."""
    if not isinstance(doc, dict) or not isinstance(doc.get("rules"), list):
        raise MaskingRuleError(f"{source}: expected a mapping with a 'rules' list")
    rules = [rule for i, raw in enumerate(doc["rules"])
             if (rule := _compile_rule(raw, f"{source}: rules[{i}]")) is not None]
    field_keys = [_compile_field_key(raw, f"{source}: field_keys[{i}]")
                  for i, raw in enumerate(doc.get("field_keys") or [])]
    return Masker(rules, field_keys)


def _compile_rule(raw: object, where: str) -> MaskRule | None:
    if not isinstance(raw, dict):
        raise MaskingRuleError(f"{where}: must be a mapping")
    unknown = set(raw) - _RULE_KEYS
    if unknown:
        raise MaskingRuleError(f"{where}: unknown keys {sorted(unknown)}")
    if not raw.get("enabled", True):
        return None
    kind = raw.get("kind")
    if not isinstance(kind, str) or not kind or not set(kind) <= _KIND_CHARS:
        raise MaskingRuleError(f"{where}: kind must be a lowercase word")
    pattern = raw.get("pattern")
    if isinstance(pattern, list) and pattern and all(isinstance(p, str) and p for p in pattern):
        pattern = r"\b(?:" + "|".join(f"(?:{p})" for p in pattern) + ")"
    validator = raw.get("validator")
    if validator is not None and validator not in CHECKS:
        raise MaskingRuleError(f"{where} ({kind}): unknown validator {validator!r} (known: {', '.join(CHECKS)})")
    regex = _compile(pattern, f"{where} ({kind}): pattern")
    return MaskRule(kind=kind, regex=regex, check=CHECKS[validator] if validator else plain,
                    secret_group=regex.groupindex.get("secret", 0))


def _compile_field_key(raw: object, where: str) -> FieldKeyRule:
    if not isinstance(raw, dict) or not isinstance(raw.get("kind"), str) or set(raw) - _FIELD_KEY_KEYS:
        raise MaskingRuleError(f"{where}: needs kind and suffixes and/or names (and nothing else)")
    words = {}
    for name in ("suffixes", "names"):
        value = raw.get(name) or []
        if not isinstance(value, list) or not all(isinstance(w, str) and w for w in value):
            raise MaskingRuleError(f"{where} ({raw['kind']}): {name} must be a list of strings")
        words[name] = [_normalize_key(w) for w in value]
    if not words["suffixes"] and not words["names"]:
        raise MaskingRuleError(f"{where} ({raw['kind']}): needs suffixes or names")
    return FieldKeyRule(raw["kind"], tuple(words["suffixes"]), frozenset(words["names"]))


def _compile(pattern: object, where: str) -> Any:
    if not isinstance(pattern, str) or not pattern:
        raise MaskingRuleError(f"{where}: required string (or list of strings)")
    try:
        return re2.compile(pattern)
    except re2.error as exc:
        raise MaskingRuleError(f"{where}: not a valid RE2 pattern: {exception_text(exc)}") from None


_cache: dict[str, tuple[int, Masker]] = {}
_cache_lock = threading.Lock()


def get_masker(path: str | Path | None = None) -> Masker:
    """The compiled rules for ``path`` (default: the fixtures file), recompiled when it changes."""
    p = Path(path) if path is not None else DEFAULT_RULES_PATH
    key = str(p)
    try:
        mtime = p.stat().st_mtime_ns
    except OSError as exc:
        raise MaskingRuleError(f"cannot read masking rules {p}: {exc}") from None
    cached = _cache.get(key)
    if cached is not None and cached[0] == mtime:
        return cached[1]
    with _cache_lock:
        try:
            doc = yaml.safe_load(p.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise MaskingRuleError(f"cannot load masking rules {p}: {exc}") from None
        masker = compile_rules(doc, str(p))
        _cache[key] = (mtime, masker)
        return masker


def mask_text(text: str, path: str | Path | None = None) -> str:
    """Convenience: ``get_masker(path).mask_text(text)``."""
    return get_masker(path).mask_text(text)


def mask_event(event: Event, path: str | Path | None = None) -> Event:
    """Convenience: ``get_masker(path).mask_event(event)``."""
    return get_masker(path).mask_event(event)
