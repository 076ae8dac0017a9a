"""The methods' order and colours: one definition for the static report (:mod:`tscnc.report`)
and the dashboard, which reads them from the API's OpenAPI document (the ``x-palette`` of the
``Method`` schema, added by ``backend.app``). Torch-free.

The order is the order of :class:`tscnc.spec.Method` (dense, then the pruning methods, then
TSCNC); a method that has no colour here (a name the report meets in older results) is drawn
after them in the plotting library's default colours.

Example::

    >>> METHOD_ORDER[:3]
    ['dense', 'lwm', 'hydra']
    >>> METHOD_COLORS["tscnc"]
    '#dc2626'
    >>> method_rank("hydra") < method_rank("tscnc") < method_rank("unknown")
    True
"""

from __future__ import annotations

from tscnc.spec import Method

METHOD_ORDER: list[str] = [m.value for m in Method]

# Mid greys and saturated hues that read on the light and the dark theme.
_COLORS: dict[Method, str] = {
    Method.dense: "#6b7280", Method.lwm: "#f59e0b", Method.hydra: "#2563eb",
    Method.tsc: "#16a34a", Method.cnc: "#9333ea", Method.tscnc: "#dc2626",
}
# A KeyError here: a new method needs a colour.
METHOD_COLORS: dict[str, str] = {m.value: _COLORS[m] for m in Method}


def method_rank(name: str) -> int:
    """Position of a method in :data:`METHOD_ORDER`; unknown names sort after every method."""
    try:
        return METHOD_ORDER.index(name)
    except ValueError:
        return len(METHOD_ORDER)


def openapi_extension() -> dict[str, object]:
    """The ``x-palette`` the API adds to its ``Method`` schema: {"order": [...], "colors": {...}}."""
    return {"order": list(METHOD_ORDER), "colors": dict(METHOD_COLORS)}
