"""Names shown to people (sweep, token and dashboard names): printable text only.

A name may hold any printable Unicode text, but no control character (Unicode category
``Cc``: NUL, tab, newline, ESC, DEL, C1 controls) and no character that reorders or hides
text when displayed (the bidirectional embeddings, overrides and isolates U+202A–U+202E,
U+2066–U+2069, the marks U+200E/U+200F/U+061C and the separators U+2028/U+2029). Such
characters let a name pose as another in a table, a log line or a terminal.

Example::

    >>> check_name("resnet sweep #2")
    'resnet sweep #2'
    >>> check_name("abc\\u202egnp.exe")
    Traceback (most recent call last):
    ...
    ValueError: must not contain control or bidirectional-formatting characters (U+202E at position 3)
"""

from __future__ import annotations

import unicodedata
from typing import Annotated, Any

from pydantic import AfterValidator

BIDI_FORMATTING = frozenset(
    [chr(c) for c in range(0x202A, 0x202F)] + [chr(c) for c in range(0x2066, 0x206A)]
    + ["\u200e", "\u200f", "\u061c", "\u2028", "\u2029"])


def check_name(value: str) -> str:
    """``value`` unchanged, or ValueError naming the first forbidden character."""
    for i, ch in enumerate(value):
        if ch in BIDI_FORMATTING or unicodedata.category(ch) == "Cc":
            raise ValueError("must not contain control or bidirectional-formatting characters "
                             f"(U+{ord(ch):04X} at position {i})")
    return value


# The same rule for the OpenAPI document (JSON Schema regex: no character of the classes above).
NAME_PATTERN = ("^[^\\u0000-\\u001f\\u007f-\\u009f\\u061c\\u200e\\u200f\\u2028\\u2029"
                "\\u202a-\\u202e\\u2066-\\u2069]*$")


class _NameSchema:
    """Adds :data:`NAME_PATTERN` to a name's JSON Schema (a field's own, stricter pattern stays)."""

    def __get_pydantic_json_schema__(self, core_schema: Any, handler: Any) -> Any:
        schema = handler(core_schema)
        schema.setdefault("pattern", NAME_PATTERN)
        return schema


DisplayName = Annotated[str, AfterValidator(check_name), _NameSchema()]
"""A ``str`` that :func:`check_name` accepts (use with ``Field(min_length=..., ...)``)."""
