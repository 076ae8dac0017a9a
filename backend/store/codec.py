"""Encoding of what the store keeps: events (stream entries) and records (Redis hashes).

Hash values are strings; ``""`` means None, booleans are ``"1"``/``"0"``, floats their
``repr``, lists and dicts JSON. Events are :data:`tscnc.records.Event` JSON
(``event.model_dump_json()``); each stream entry has the fields ``run`` (run id), ``type`` and
``data``.
"""

from __future__ import annotations

import functools
import json
import statistics
import types
import typing
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple, TypeVar

from pydantic import BaseModel

from tscnc.records import Event, parse_event

M = TypeVar("M", bound=BaseModel)

# The largest stream id: nothing can follow it.
MAX_STREAM_ID = f"{2**64 - 1}-{2**64 - 1}"


def encode_event(event: Event) -> str:
    """The stored form of an event (JSON; infinities as "Infinity")."""
    return event.model_dump_json()


def decode_event(data: str | bytes) -> Event:
    return parse_event(data)


class StreamEntry(NamedTuple):
    """One stream entry: id (the SSE id), run id, event type and event JSON."""

    id: str
    run_id: str
    type: str
    data: str


def entries(raw: Sequence[Any]) -> list[StreamEntry]:
    """Stream entries from XRANGE/XREAD's ``[(id, fields), ...]``."""
    return [StreamEntry(eid, f.get("run", ""), f.get("type", ""), f.get("data", "{}"))
            for eid, f in raw]


def enc(v: Any) -> str:
    """Hash value encoding: None -> "", bool -> "1"/"0", float -> repr, else str."""
    if v is None:
        return ""
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, float):
        return repr(v)
    if hasattr(v, "value"):          # enums
        return str(v.value)
    return str(v)


def fields_json(fields: Mapping[str, Any]) -> str:
    """Fields for a Lua script that sets them (``{name: encoded value}`` JSON)."""
    return json.dumps({k: enc(v) for k, v in fields.items()})


def opt(v: str | None) -> str | None:
    return v if v else None


def median(values: Iterable[float]) -> float | None:
    vals = list(values)
    return float(statistics.median(vals)) if vals else None


# ---- records -------------------------------------------------------------------------------

_ZERO: dict[str, Any] = {"json": None, "bool": False, "num": "0", "text": ""}


def _kind(annotation: Any) -> str:
    """How a field is stored: ``json`` (list, dict), ``bool``, ``num`` or ``text``."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and len(args) == 1:
        annotation = args[0]
    if typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    origin = typing.get_origin(annotation) or annotation
    if origin in (list, dict):
        return "json"
    if annotation is bool:
        return "bool"
    return "num" if annotation in (int, float) else "text"


@functools.cache
def _layout(model: type[BaseModel]) -> tuple[tuple[str, str, Any], ...]:
    """(name, kind, value for a missing required field) of each field of ``model``."""
    out = []
    for name, f in model.model_fields.items():
        kind = _kind(f.annotation)
        zero = ([] if typing.get_origin(f.annotation) is list else {}) if kind == "json" \
            else _ZERO[kind]
        out.append((name, kind, zero if f.is_required() else None))
    return tuple(out)


def decode_hash(model: type[M], h: Mapping[str, str], **given: Any) -> M:
    """A record from its stored hash (see the module docstring): an empty or missing value
    takes the field's default (a required field the zero of its type: ``""``, 0, ``[]``),
    ``given`` values replace the hash's. Raises ``ValueError`` for a value that does not
    fit (e.g. an unknown status)."""
    data: dict[str, Any] = {}
    for name, kind, zero in _layout(model):
        if name in given:
            data[name] = given[name]
            continue
        raw = h.get(name)
        if not raw:
            if zero is not None:
                data[name] = zero
            continue
        data[name] = json.loads(raw) if kind == "json" else raw == "1" if kind == "bool" \
            else raw
    return model.model_validate(data)
