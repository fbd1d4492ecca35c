"""Text parsers for rule-pack uploads: the body is handed to the pack validator as a string."""
from __future__ import annotations

from rest_framework.exceptions import ParseError
from rest_framework.parsers import BaseParser

from apps.core.errors import ApplicationError

MAX_PACK_BYTES = 2 * 1024 * 1024


class _TextParser(BaseParser):
    def parse(self, stream, media_type=None, parser_context=None) -> str:
        raw = stream.read(MAX_PACK_BYTES + 1) if stream is not None else b""
        if len(raw) > MAX_PACK_BYTES:
            raise ApplicationError(f"rule pack larger than {MAX_PACK_BYTES} bytes", code="too_large", status_code=413)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ParseError(f"body is not valid UTF-8 (byte {exc.start})") from None


class YamlParser(_TextParser):
    media_type = "application/yaml"


class XYamlParser(_TextParser):
    media_type = "application/x-yaml"


class TextYamlParser(_TextParser):
    media_type = "text/yaml"


class PlainTextParser(_TextParser):
    media_type = "text/plain"


PACK_PARSERS = [YamlParser, XYamlParser, TextYamlParser, PlainTextParser]
