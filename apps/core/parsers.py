"""The API's JSON parser: DRF's, with a nesting-depth limit checked before parsing.

Why: Python's ``json`` recurses once per nesting level, so ``[[[[...]]]]`` a few thousand deep
raised RecursionError inside DRF's parser: an HTML 500 on any JSON endpoint (notes, silences, ...).
No API body needs more than a handful of levels, so anything deeper than ``API_JSON_MAX_DEPTH``
(default 64) is refused with 400 ``parse_error`` naming the limit, before ``json`` sees it.
"""
from __future__ import annotations

import io
import re
from typing import Any

from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

DEFAULT_MAX_DEPTH = 64

# A string literal (escapes included, unrolled so a missing closing quote stays linear) or a bracket.
_TOKENS = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]', re.DOTALL)
_OPEN = frozenset(b"[{")


def json_depth_exceeds(data: bytes, limit: int) -> bool:
    """True when the JSON text ``data`` nests arrays/objects more than ``limit`` levels deep.

    Brackets inside strings do not count. Malformed text gives an answer the parser then refuses
    anyway, so the scan never needs to be stricter than that.
    """
    depth = 0
    for match in _TOKENS.finditer(data):
        char = match.group()[0]
        if char in _OPEN:
            depth += 1
            if depth > limit:
                return True
        elif char != 0x22:  # a closing bracket (0x22 is the '"' of a skipped string)
            depth -= 1
    return False


class DepthLimitedJSONParser(JSONParser):
    """``REST_FRAMEWORK["DEFAULT_PARSER_CLASSES"]``: refuses bodies nested deeper than the limit."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: dict | None = None) -> Any:
        data = stream.read() if stream is not None else b""
        limit = int(getattr(settings, "API_JSON_MAX_DEPTH", DEFAULT_MAX_DEPTH))
        if json_depth_exceeds(data, limit):
            raise ParseError(f"JSON body nested deeper than {limit} levels (API_JSON_MAX_DEPTH)")
        return super().parse(io.BytesIO(data), media_type, parser_context)
