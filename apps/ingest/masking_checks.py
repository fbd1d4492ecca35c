"""Python checks behind the masking rules: run on RE2 candidate matches only, never on whole texts.

Each check takes the UTF-8 text, one match of its rule's RE2 pattern (over bytes) and the span
of the match's ``secret`` group (the whole match if the rule has none) and returns the spans to
mask, possibly none. Checksums (Luhn, IBAN mod 97, Chinese ID) and the
boundary tests RE2 cannot express (no look-around) live here. Every check is linear in the
length of its candidate, and a candidate is a substring of the text, so masking stays linear.
"""
from __future__ import annotations

from collections.abc import Callable

import re2

Span = tuple[int, int]
Check = Callable[[bytes, Span, Span], list[Span]]

MARKER_PREFIX = b"[MASKED:"
_WORD = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_")
_DIGITS = frozenset(b"0123456789")
_SEPARATORS = b" -"
_FULLWIDTH_COLON = "：".encode()
_WORD_OR_PLUS = _WORD | {0x2B}
_NANP_BEFORE = _WORD | frozenset(b".+-")
# Sets, not bytes: _before/_after return -1 at the ends of the text.
_DOT_OR_PLUS = frozenset(b".+")
_PHONE_SEPARATORS = frozenset(b" .-")
_KEY_SEPARATORS = frozenset(b"=:")


def plain(data: bytes, match: Span, secret: Span) -> list[Span]:
    """The ``secret`` group (or the whole match), unless it is already a mask marker."""
    start, end = secret
    if start < 0 or start == end or data.startswith(MARKER_PREFIX, start):
        return []
    return [(start, end)]


def _before(data: bytes, i: int) -> int:
    return data[i - 1] if i > 0 else -1


def _after(data: bytes, i: int) -> int:
    return data[i] if i < len(data) else -1


# --- checksums ---------------------------------------------------------------------------------

_LUHN_DOUBLE = (0, 2, 4, 6, 8, 1, 3, 5, 7, 9)


def luhn_ok(text: str | bytes) -> bool:
    """True when the digits of ``text`` (13-19 of them) pass the Luhn checksum."""
    raw = text.encode() if isinstance(text, str) else text
    digits = [c - 48 for c in raw if c in _DIGITS]
    if not 13 <= len(digits) <= 19:
        return False
    total = 0
    for i, d in enumerate(reversed(digits)):
        total += _LUHN_DOUBLE[d] if i % 2 else d
    return total % 10 == 0


def _issuer(d0: int, d1: int) -> bool:
    # 22-27 (Mastercard 2-series) and 30-69 (Amex, Diners, JCB, Visa, Mastercard, Discover,
    # UnionPay, Maestro): epoch times (1...) and dates (19xx/20xx) never look like a card.
    return (d0 == 2 and 2 <= d1 <= 7) or 3 <= d0 <= 6


def luhn(data: bytes, match: Span, secret: Span) -> list[Span]:
    """Card numbers inside a run of digit groups: any grouping, several cards, extra groups around.

    Windows start and end on group boundaries and hold 13-19 digits; the longest Luhn-valid
    window from each group start wins. At most 19 groups fit a window, so this is linear."""
    start, end = match
    if _after(data, end) in _WORD:
        return []
    groups: list[Span] = []
    i = start
    while i < end:
        j = i
        while j < end and data[j] in _DIGITS:
            j += 1
        groups.append((i, j))
        while j < end and data[j] in _SEPARATORS:
            j += 1
        i = j
    spans: list[Span] = []
    g = 0
    while g < len(groups):
        first = groups[g][0]
        if (g == 0 and _before(data, first) in _DOT_OR_PLUS) or not _issuer_at(data, groups, g):
            g += 1
            continue
        found = _longest_card(data, groups, g)
        if found is None:
            g += 1
            continue
        spans.append((first, groups[found][1]))
        g = found + 1
    return spans


def _issuer_at(data: bytes, groups: list[Span], g: int) -> bool:
    s, e = groups[g]
    if e - s >= 2:
        return _issuer(data[s] - 48, data[s + 1] - 48)
    if g + 1 < len(groups):
        return _issuer(data[s] - 48, data[groups[g + 1][0]] - 48)
    return False


def _longest_card(data: bytes, groups: list[Span], g: int) -> int | None:
    count, ends = 0, []
    for k in range(g, len(groups)):
        count += groups[k][1] - groups[k][0]
        if count > 19:
            break
        if count >= 13:
            ends.append(k)
    for k in reversed(ends):
        if luhn_ok(data[groups[g][0]:groups[k][1]]):
            return k
    return None


_IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BR": 29,
    "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "DO": 28, "EE": 20, "EG": 29,
    "ES": 24, "FI": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28,
    "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20,
    "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "MC": 27, "MD": 24, "ME": 22, "MK": 19,
    "MR": 27, "MT": 31, "MU": 30, "NL": 18, "NO": 15, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29,
    "RO": 24, "RS": 22, "SA": 24, "SC": 31, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "ST": 25, "SV": 28,
    "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20,
}


def iban_ok(text: str) -> bool:
    """True for an IBAN of its country's length whose mod-97 check gives 1 (spaces ignored)."""
    compact = text.replace(" ", "").upper()
    if _IBAN_LENGTHS.get(compact[:2]) != len(compact) or not compact.isalnum() or not compact.isascii():
        return False
    rearranged = compact[4:] + compact[:4]
    return int("".join(str(int(c, 36)) for c in rearranged)) % 97 == 1


def iban(data: bytes, match: Span, secret: Span) -> list[Span]:
    """The candidate, or it with trailing space-separated words dropped ("... 00 EUR")."""
    start, end = match
    while end > start:
        if iban_ok(data[start:end].decode("ascii")):
            return [(start, end)]
        cut = data.rfind(b" ", start, end)
        if cut < 0:
            break
        end = cut
    return []


_CN_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CN_ID_CHECK = "10X98765432"


def cn_id_ok(text: str) -> bool:
    """True for an 18-character Chinese resident ID whose last character is its checksum."""
    if len(text) != 18 or not text[:17].isdigit():
        return False
    total = sum(int(c) * w for c, w in zip(text[:17], _CN_ID_WEIGHTS))
    return _CN_ID_CHECK[total % 11] == text[17].upper()


def cn_id(data: bytes, match: Span, secret: Span) -> list[Span]:
    start, end = match
    return [(start, end)] if cn_id_ok(data[start:end].decode("ascii")) else []


# --- phones ------------------------------------------------------------------------------------

def _digit_count(data: bytes, start: int, end: int) -> int:
    return sum(1 for c in data[start:end] if c in _DIGITS)


def _glued_to_more_digits(data: bytes, end: int) -> bool:
    nxt = _after(data, end)
    return nxt in _WORD or (nxt in _PHONE_SEPARATORS and _after(data, end + 1) in _DIGITS)


def cn_mobile(data: bytes, match: Span, secret: Span) -> list[Span]:
    start, end = match
    if data[start] != 0x2B and _before(data, start) in _WORD_OR_PLUS:
        return []
    return [(start, end)]


def phone(data: bytes, match: Span, secret: Span) -> list[Span]:
    """E.164: 8-15 digits, not glued to a word, a "+", or a further digit group."""
    start, end = match
    if _before(data, start) in _WORD_OR_PLUS or _glued_to_more_digits(data, end):
        return []
    return [(start, end)] if 8 <= _digit_count(data, start, end) <= 15 else []


def nanp_phone(data: bytes, match: Span, secret: Span) -> list[Span]:
    start, end = match
    if _before(data, start) in _NANP_BEFORE or _glued_to_more_digits(data, end):
        return []
    return [(start, end)]


def ipv4(data: bytes, match: Span, secret: Span) -> list[Span]:
    start, end = match
    if _before(data, start) == 0x2E or (_after(data, end) == 0x2E and _after(data, end + 1) in _DIGITS):
        return []
    return [(start, end)]


# --- credentials -------------------------------------------------------------------------------

def bearer(data: bytes, match: Span, secret: Span) -> list[Span]:
    start, end = secret
    token = data[start:end]
    if end - start >= 20 or any(c in _DIGITS for c in token):
        return [(start, end)]
    return []


def url_password(data: bytes, match: Span, secret: Span) -> list[Span]:
    """Not "host:8080/path@..." (a port and a path): digits then "/" is never a password."""
    start, end = secret
    i = start
    while i < end and data[i] in _DIGITS:
        i += 1
    if i > start and i < end and data[i] == 0x2F:
        return []
    return plain(data, match, secret)


# A further word of a multi-word value; a word holding "=" or ":" starts the next key.
_MORE_WORDS = re2.compile(rb'(?:[ \t]+[^\s"\',;&=:}\]\\\[{()<>|]+)+')


def keyed(data: bytes, match: Span, secret: Span) -> list[Span]:
    """A value after a secret-named key. Lists and objects are masked to their closing bracket;
    after ":" (prose, YAML, headers) a bare value runs over further words up to the end of the
    line, a "," or ";", or the next ``key=``/``key:``."""
    start, end = secret
    if data.startswith(MARKER_PREFIX, start):
        return []
    first = data[start]
    if first in b"[{":
        return [(start, _closing_bracket(data, start))]
    if first in b"\"'\\":
        return [(start, end)] if end - start > 2 else []
    if _after_colon(data, match[0], start):
        more = _MORE_WORDS.match(data, end)
        if more is not None:
            stop = more.end()
            if _after(data, stop) in _KEY_SEPARATORS or data.startswith(_FULLWIDTH_COLON, stop):
                stop = max(data.rfind(b" ", end, stop), data.rfind(b"\t", end, stop))
            end = max(end, stop)
    return [(start, end)]


def _after_colon(data: bytes, key_start: int, value_start: int) -> bool:
    i = value_start
    while i > key_start and data[i - 1] in b" \t":
        i -= 1
    return data[i - 1] == 0x3A or data.endswith(_FULLWIDTH_COLON, key_start, i)


def _closing_bracket(data: bytes, start: int) -> int:
    """End of the JSON-ish list/object opening at ``start`` (quotes respected); the end of the
    text if it never closes: an unterminated secret is masked to the end, never left half-shown."""
    depth, i, n, quote = 0, start, len(data), False
    while i < n:
        c = data[i]
        if quote:
            if c == 0x5C:
                i += 1
            elif c == 0x22:
                quote = False
        elif c == 0x22:
            quote = True
        elif c in b"[{":
            depth += 1
        elif c in b"]}":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    return n


_COOKIE_ATTRIBUTES = frozenset({b"path", b"domain", b"expires", b"max-age", b"samesite", b"secure",
                                b"httponly", b"priority", b"partitioned", b"version", b"comment"})


def cookie(data: bytes, match: Span, secret: Span) -> list[Span]:
    """Each ``name=value`` value of a Cookie/Set-Cookie header, attributes (Path, Expires ...)
    kept; a header value without pairs is masked whole."""
    start, end = secret
    spans: list[Span] = []
    pos = start
    while pos < end:
        stop = data.find(b";", pos, end)
        stop = end if stop < 0 else stop
        eq = data.find(b"=", pos, stop)
        if eq >= 0:
            name = data[pos:eq].strip().lower()
            v0, v1 = eq + 1, stop
            while v0 < v1 and data[v0] in b" \t":
                v0 += 1
            while v1 > v0 and data[v1 - 1] in b" \t":
                v1 -= 1
            if v1 > v0 and name not in _COOKIE_ATTRIBUTES and not data.startswith(MARKER_PREFIX, v0):
                spans.append((v0, v1))
        pos = stop + 1
    if not spans and data.find(b"=", start, end) < 0 and not data.startswith(MARKER_PREFIX, start):
        token_end = start
        while token_end < end and data[token_end] not in b" \t;,":
            token_end += 1
        return [(start, token_end)]
    return spans


CHECKS: dict[str, Check] = {
    "keyed": keyed, "luhn": luhn, "iban": iban, "cn_id": cn_id, "cn_mobile": cn_mobile,
    "phone": phone, "nanp_phone": nanp_phone, "bearer": bearer, "url_password": url_password,
    "cookie": cookie, "ipv4": ipv4,
}
