"""Match events against one tenant's rules, compiled once per rules version.

Semantics (exactly): rule *i* matches an event when
  1. its level filter passes: ``match.levels`` is empty, or the event's level is one of them
     (set membership, not "at least"), AND
  2. it has no keywords and no patterns, OR any keyword occurs in the message
     (case-insensitive substring, Unicode casefold), OR any pattern finds a match anywhere in
     the message (RE2 syntax, case-sensitive unless the pattern says ``(?i)``).
Only the message is searched, not ``fields``; the detector sees masked messages. Rules with
``enabled: False`` never match. Indices returned refer to the sequence passed to ``build``.

Cost: all keywords of all rules live in one Aho-Corasick automaton and all patterns in one
``re2.Set``, so scanning a message is one pass each whatever the rule count; rules are then
selected with precomputed per-level sets. Patterns run on RE2 (linear time, no backtracking),
which is why backreferences and lookaround are refused at validation (``pattern_error``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable, Sequence

import ahocorasick
import re2

from apps.core.events import Event
from apps.core.readable import exception_text
from apps.core.vocabulary import LEVEL_NUMBERS

if TYPE_CHECKING:
    from apps.rules.spec import RuleSpec

# RE2's default 8 MiB is too little for a set built from 1,000 rules' patterns; when the DFA
# runs out of memory RE2::Set reports "no match" silently, so budget generously.
_SET_MAX_MEM = 256 << 20


def _options(max_mem: int | None = None) -> re2.Options:
    opts = re2.Options()
    opts.log_errors = False
    if max_mem:
        opts.max_mem = max_mem
    return opts


def pattern_error(pattern: str) -> str | None:
    """None if RE2 compiles ``pattern``; otherwise a message for rule validation."""
    try:
        re2.compile(pattern, _options())
    except re2.error as exc:
        return f"cannot be compiled by the linear-time engine: {exception_text(exc)}"
    return None


class CompiledRuleSet:
    """Immutable compiled form of a rule list; share it between threads and batches."""

    __slots__ = ("specs", "_automaton", "_patterns", "_pattern_rules",
                 "_level_only", "_level_ok", "_text_rules", "_empty")

    @classmethod
    def build(cls, specs: Sequence[RuleSpec]) -> CompiledRuleSet:
        """Compile ``specs`` (already validated and with tenant overrides applied)."""
        self = cls.__new__(cls)
        self.specs = tuple(specs)
        keyword_rules: dict[str, list[int]] = {}
        pattern_rules: dict[str, list[int]] = {}
        level_ok: dict[int, set[int]] = {n: set() for n in LEVEL_NUMBERS.values()}
        level_only: dict[int, set[int]] = {n: set() for n in LEVEL_NUMBERS.values()}
        text_rules: set[int] = set()

        for i, spec in enumerate(self.specs):
            if not spec.enabled:
                continue
            m = spec.match
            wanted = [LEVEL_NUMBERS[lv] for lv in m.levels] if m.levels else list(level_ok)
            has_text = bool(m.keywords or m.patterns)
            for n in wanted:
                (level_ok if has_text else level_only)[n].add(i)
            if has_text:
                text_rules.add(i)
            for kw in m.keywords:
                keyword_rules.setdefault(kw.casefold(), []).append(i)
            for p in m.patterns:
                pattern_rules.setdefault(p, []).append(i)

        self._automaton = None
        if keyword_rules:
            automaton = ahocorasick.Automaton()
            for kw, rules in keyword_rules.items():
                automaton.add_word(kw, frozenset(rules))
            automaton.make_automaton()
            self._automaton = automaton

        self._patterns = None
        self._pattern_rules: tuple[frozenset[int], ...] = ()
        if pattern_rules:
            pset = re2.Set.SearchSet(_options(_SET_MAX_MEM))
            for p in pattern_rules:
                pset.Add(p)
            pset.Compile()
            self._patterns = pset
            self._pattern_rules = tuple(frozenset(r) for r in pattern_rules.values())

        self._level_ok = {n: frozenset(s) for n, s in level_ok.items()}
        self._level_only = {n: tuple(sorted(s)) for n, s in level_only.items()}
        self._text_rules = frozenset(text_rules)
        self._empty = not text_rules and not any(level_only.values())
        return self

    def __len__(self) -> int:
        return len(self.specs)

    def match(self, event: Event) -> list[int]:
        """Sorted indices of the rules ``event`` matches (see module docstring)."""
        if self._empty:
            return []
        level_no = event.level_no
        always = self._level_only.get(level_no, ())
        candidates = self._level_ok.get(level_no)
        if not candidates:
            return list(always)
        hits = self._text_hits(event.message)
        hits &= candidates
        if not hits:
            return list(always)
        if always:
            hits.update(always)
        return sorted(hits)

    def _text_hits(self, message: str) -> set[int]:
        hits: set[int] = set()
        if self._automaton is not None:
            seen: set[frozenset[int]] = set()
            for _end, rules in self._automaton.iter(message.casefold()):
                # The same keyword repeated in a long line adds nothing after the first hit.
                if rules not in seen:
                    seen.add(rules)
                    hits |= rules
        if self._patterns is not None:
            for idx in self._patterns.Match(message) or ():
                hits |= self._pattern_rules[idx]
        return hits


def group_key(group_by: Iterable[str], event: Event) -> tuple[str, ...]:
    """The window/alert grouping key of ``event``: one string per ``group_by`` entry.

    ``fields.<name>`` reads a top-level field; a missing value (or trace_id) is ``""``.
    Non-string field values are rendered with ``str``.
    """
    out = []
    for name in group_by:
        if name.startswith("fields."):
            value = event.fields.get(name[7:])
        else:
            value = getattr(event, name)
        out.append("" if value is None else value if isinstance(value, str) else str(value))
    return tuple(out)
