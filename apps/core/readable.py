"""Text for error messages, with no Django import (the rule matcher and masking load without it)."""
from __future__ import annotations

from typing import Any


def plain_text(value: Any) -> str:
    """``str()``, but bytes decoded: some C extensions' errors carry bytes (pyre2 says
    ``b'missing ): (('``), which ``str()`` would show as a Python literal."""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def exception_text(exc: BaseException) -> str:
    """An exception's message for a client, bytes decoded (see ``plain_text``)."""
    return plain_text(exc.args[0]) if len(exc.args) == 1 else str(exc)
