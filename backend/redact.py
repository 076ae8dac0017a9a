"""Credentials never reach a log line: ``token=…`` query values, ``Bearer …`` values, share
links (``/share/<token>``) and the service's own token formats are replaced by ``[redacted]``.

Installed as a log *record factory* (:func:`install`), so it holds for every logger and
handler of the process, uvicorn's access and error logs included, and survives the logging
configuration uvicorn applies after the app is built. The API refuses tokens in URLs anyway
(``backend/deps.py``); this is the second line for whatever a client still sends.

Example::

    >>> redact('GET /api/v1/runs?limit=5&token=abc123secret HTTP/1.1')
    'GET /api/v1/runs?limit=5&token=[redacted] HTTP/1.1'
    >>> redact('Authorization: Bearer tscnc_0123456789abcdefghij')
    'Authorization: Bearer [redacted]'
"""

from __future__ import annotations

import logging
import re
from typing import Any

REDACTED = "[redacted]"
_PATTERNS = [
    # ?token=… / &access_token=… / share_token=… (URL or form encoded, up to a separator)
    (re.compile(r"(?i)(\b(?:access_|share_)?token=)[^&\s\"'#;,]+"), rf"\1{REDACTED}"),
    (re.compile(r"(?i)(\bbearer\s+)[A-Za-z0-9_\-.~+/=]+"), rf"\1{REDACTED}"),
    # share links: /share/<token> (the page and /api/v1/share/<token>)
    (re.compile(r"(/share/)[^/?#\s\"']+"), rf"\1{REDACTED}"),
    # the service's token formats (backend/store/): tscnc_… (API), tscncs_… (share links)
    (re.compile(r"\btscncs?_[A-Za-z0-9_\-]{16,}"), REDACTED),
]


def redact(text: str) -> str:
    """``text`` with every credential-looking part replaced by ``[redacted]``."""
    for pattern, repl in _PATTERNS:
        text = pattern.sub(repl, text)
    return text


def _redact_arg(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, int | float | bool) or value is None:
        return value
    text = str(value)
    clean = redact(text)
    return value if clean == text else clean


def redact_record(record: logging.LogRecord) -> logging.LogRecord:
    """Redact a record's message, arguments and exception text in place."""
    if isinstance(record.msg, str):
        record.msg = redact(record.msg)
    if isinstance(record.args, tuple):
        record.args = tuple(_redact_arg(a) for a in record.args)
    elif isinstance(record.args, dict):
        record.args = {k: _redact_arg(v) for k, v in record.args.items()}
    if record.args:
        # A credential split between the format and an argument ("Bearer %s"): redact the
        # whole message (arguments that are clean on their own are kept for formatters that
        # read them, like uvicorn's access log).
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            message = None
        if message is not None and redact(message) != message:
            record.msg, record.args = redact(message), ()
    if record.exc_info and record.exc_info[0] is not None and not record.exc_text:
        record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
    return record


def install() -> None:
    """Redact every log record this process creates from now on (idempotent)."""
    previous = logging.getLogRecordFactory()
    if getattr(previous, "tscnc_redacting", False):
        return

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        return redact_record(previous(*args, **kwargs))

    factory.tscnc_redacting = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)
