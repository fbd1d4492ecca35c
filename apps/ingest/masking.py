"""Mask secrets and personal data in events before anything is stored or sent.

Rules live in ``fixtures/masking_rules.yaml`` (format documented there). Matches become
``[MASKED:<kind>]``; a rule with a ``secret`` group replaces only that group, so
``password=hunter2`` becomes ``password=[MASKED:password]``.

Failure policy: fail closed. A missing or malformed rules file raises ``MaskingRuleError`` at
load time, so ingestion errors out (503) instead of storing unmasked data. Masking itself never
raises on input text.

Hot path: ``get_masker()`` caches the compiled rules per (path, mtime) and costs one ``stat``;
call it once per batch, then ``masker.mask_event`` per event. Each rule's regex only runs when a
cheap prefilter (a literal hint in the lowercased text, or a tiny regex) says it could match.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

import ahocorasick
import yaml

from apps.ingest.normalize import Event

DEFAULT_RULES_PATH = Path(__file__).resolve().parents[2] / "fixtures" / "masking_rules.yaml"

_RULE_KEYS = frozenset({"kind", "pattern", "hints", "prefilter", "validator", "enabled"})
_QUOTES = ('\\"', '"', "'")


class MaskingRuleError(ValueError):
    """The masking rules file is missing or invalid."""


def luhn_ok(text: str) -> bool:
    """True when the digits of ``text`` (13-19 of them) pass the Luhn checksum."""
    digits = [int(c) for c in text if c.isdecimal()]
    if not 13 <= len(digits) <= 19:
        return False
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def phone_ok(text: str) -> bool:
    """True when ``text`` holds 8-15 digits, the E.164 range."""
    return 8 <= sum(c.isdecimal() for c in text) <= 15


VALIDATORS: dict[str, Callable[[str], bool]] = {"luhn": luhn_ok, "phone": phone_ok}


@dataclass(slots=True, frozen=True)
class MaskRule:
    kind: str
    regex: re.Pattern[str]
    hints: tuple[str, ...]
    prefilter: re.Pattern[str] | None
    validator: Callable[[str], bool] | None
    has_secret_group: bool

    def apply(self, text: str) -> str:
        """``text`` with this rule's matches masked (hints are checked by the ``Masker``)."""
        if self.prefilter is not None and self.prefilter.search(text) is None:
            return text
        return self.regex.sub(self._replace, text)

    def _replace(self, m: re.Match[str]) -> str:
        if self.has_secret_group:
            secret = m.group("secret")
            if secret is None:
                return m.group(0)
            start, end = m.span("secret")
        else:
            secret = m.group(0)
            start, end = m.span()
        if self.validator is not None and not self.validator(secret):
            return m.group(0)
        masked = f"[MASKED:{self.kind}]"
        for q in _QUOTES:
            if len(secret) > 2 * len(q) and secret.startswith(q) and secret.endswith(q):
                masked = f"{q}{masked}{q}"
                break
        whole = m.group(0)
        offset = m.start()
        return whole[: start - offset] + masked + whole[end - offset:]


@dataclass(slots=True, frozen=True)
class FieldKeyRule:
    kind: str
    regex: re.Pattern[str]


class Masker:
    """Compiled masking rules; immutable and safe to share between threads."""

    def __init__(self, rules: list[MaskRule], field_keys: list[FieldKeyRule]) -> None:
        self.rules = tuple(rules)
        self.field_keys = tuple(field_keys)
        # All hints of all rules in one automaton: one pass over the line tells which rules can
        # possibly match, instead of a substring scan per hint.
        self._hinted = frozenset(i for i, r in enumerate(self.rules) if r.hints)
        self._hints = None
        if self._hinted:
            by_hint: dict[str, set[int]] = {}
            for i, rule in enumerate(self.rules):
                for hint in rule.hints:
                    by_hint.setdefault(hint, set()).add(i)
            automaton = ahocorasick.Automaton()
            for hint, idxs in by_hint.items():
                automaton.add_word(hint, frozenset(idxs))
            automaton.make_automaton()
            self._hints = automaton

    def mask_text(self, text: str) -> str:
        """``text`` with every enabled rule applied in file order."""
        if not text:
            return text
        # Hints are looked up once in the original line: masking only replaces text with
        # markers, and a marker (e.g. "[MASKED:api_key]") is never itself a secret.
        active: set[int] = set()
        if self._hints is not None:
            for _end, idxs in self._hints.iter(text.lower()):
                active |= idxs
        for i, rule in enumerate(self.rules):
            if i in self._hinted and i not in active:
                continue
            text = rule.apply(text)
        return text

    def _masked_key_kind(self, key: str) -> str | None:
        for rule in self.field_keys:
            if rule.regex.search(key):
                return rule.kind
        return None

    def mask_value(self, value: Any) -> Any:
        """Mask strings inside ``value`` (str, dict, list, scalars) recursively; returns a copy."""
        if isinstance(value, str):
            return self.mask_text(value)
        if isinstance(value, dict):
            out = {}
            for key, item in value.items():
                kind = self._masked_key_kind(key) if isinstance(key, str) else None
                if kind is not None and item is not None and not isinstance(item, (dict, list)):
                    out[key] = f"[MASKED:{kind}]"
                else:
                    out[key] = self.mask_value(item)
            return out
        if isinstance(value, list):
            return [self.mask_value(v) for v in value]
        return value

    def mask_event(self, event: Event) -> Event:
        """A copy of ``event`` with message and field values masked (trace_id, ids untouched)."""
        return replace(event, message=self.mask_text(event.message),
                       fields=self.mask_value(event.fields))


def compile_rules(doc: object, source: str = "<rules>") -> Masker:
    """Build a ``Masker`` from the parsed YAML document; raise ``MaskingRuleError`` if invalid."""
    if not isinstance(doc, dict) or not isinstance(doc.get("rules"), list):
        raise MaskingRuleError(f"{source}: expected a mapping with a 'rules' list")
    rules: list[MaskRule] = []
    for i, raw in enumerate(doc["rules"]):
        where = f"{source}: rules[{i}]"
        if not isinstance(raw, dict):
            raise MaskingRuleError(f"{where}: must be a mapping")
        unknown = set(raw) - _RULE_KEYS
        if unknown:
            raise MaskingRuleError(f"{where}: unknown keys {sorted(unknown)}")
        if not raw.get("enabled", True):
            continue
        kind = raw.get("kind")
        if not isinstance(kind, str) or not re.fullmatch(r"[a-z0-9_]+", kind):
            raise MaskingRuleError(f"{where}: kind must be a lowercase word")
        regex = _compile(raw.get("pattern"), f"{where} ({kind}): pattern")
        hints = raw.get("hints") or []
        if not isinstance(hints, list) or not all(isinstance(h, str) and h for h in hints):
            raise MaskingRuleError(f"{where} ({kind}): hints must be a list of strings")
        prefilter = raw.get("prefilter")
        validator_name = raw.get("validator")
        if validator_name is not None and validator_name not in VALIDATORS:
            raise MaskingRuleError(
                f"{where} ({kind}): unknown validator {validator_name!r} "
                f"(known: {', '.join(VALIDATORS)})")
        rules.append(MaskRule(
            kind=kind,
            regex=regex,
            hints=tuple(h.lower() for h in hints),
            prefilter=_compile(prefilter, f"{where} ({kind}): prefilter") if prefilter else None,
            validator=VALIDATORS[validator_name] if validator_name else None,
            has_secret_group="secret" in regex.groupindex,
        ))
    field_keys: list[FieldKeyRule] = []
    for i, raw in enumerate(doc.get("field_keys") or []):
        where = f"{source}: field_keys[{i}]"
        if not isinstance(raw, dict) or not isinstance(raw.get("kind"), str):
            raise MaskingRuleError(f"{where}: needs kind and pattern")
        regex = _compile(raw.get("pattern"), f"{where}: pattern")
        field_keys.append(FieldKeyRule(raw["kind"], regex))
    return Masker(rules, field_keys)


def _compile(pattern: object, where: str) -> re.Pattern[str]:
    if not isinstance(pattern, str) or not pattern:
        raise MaskingRuleError(f"{where}: required string")
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise MaskingRuleError(f"{where}: {exc}") from None


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
