"""Logging: one JSON object per line (or plain text), with the request id, numbers masked.

Standard ``logging`` with a JSON formatter rather than structlog: the server's own lines
(uvicorn's, SQLAlchemy's, the outbox's) all go through ``logging`` already, and one formatter
at the end of the pipe is the one place where every line, whoever wrote it, gets the request
id and has subscriber numbers masked.
"""

from __future__ import annotations

import json
import logging
import re
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from nextbest.settings import Settings

__all__ = [
    "JsonFormatter",
    "TextFormatter",
    "current_request_id",
    "logging_config",
    "mask_numbers",
    "request_id_var",
]

# The id of the request being served (set by the request-context middleware).
request_id_var: ContextVar[str | None] = ContextVar("nextbest_request_id", default=None)

# A mainland mobile number as front-line systems type it: an optional country prefix, spaces,
# dashes or brackets between digits (not dots: "1.3912345678" is far likelier a float in a log
# line). Bounded by non-digits only, so a number glued to letters is masked too; the price is
# that, rarely, an 11-digit run inside a hex id (decision, request) is masked as well.
_SEP = r"[\s\-()]*"
_NUMBER = re.compile(
    rf"(?<![0-9])(?:(?:\+86|0086|86){_SEP})?1{_SEP}[3-9](?:{_SEP}[0-9]){{9}}(?![0-9])"
)


def _masked(match: re.Match[str]) -> str:
    digits = re.sub(r"[^0-9]", "", match.group(0))[-11:]
    return f"{digits[:3]}****{digits[-4:]}"


def mask_numbers(text: str) -> str:
    """138****5678 for every mobile number in ``text``."""
    return _NUMBER.sub(_masked, text)


def current_request_id() -> str | None:
    return request_id_var.get()


# Attributes every LogRecord has; anything else was passed with `extra=` and is logged.
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "taskName",
    "color_message",  # uvicorn's coloured copy of the message
}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        request_id = getattr(record, "request_id", None) or request_id_var.get()
        if request_id:
            entry["request_id"] = request_id
        for key, value in record.__dict__.items():
            if key not in _STANDARD and key not in entry and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return mask_numbers(json.dumps(entry, ensure_ascii=False, default=str))


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        request_id = getattr(record, "request_id", None) or request_id_var.get()
        if request_id:
            line += f" request_id={request_id}"
        return mask_numbers(line)


def logging_config(settings: Settings) -> dict[str, Any]:
    """A ``logging.config.dictConfig`` for the server (uvicorn takes it as ``log_config``).

    uvicorn's access log is off: the request-context middleware writes one access line per
    request itself, with the request id, the key and the duration.
    """
    level = settings.log_level.upper()
    if level == "TRACE":
        level = "DEBUG"
    formatter = "json" if settings.log_format == "json" else "text"
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "json": {"()": "nextbest.logs.JsonFormatter"},
            "text": {"()": "nextbest.logs.TextFormatter"},
        },
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": formatter,
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"level": level, "handlers": ["stderr"]},
        "loggers": {
            "uvicorn": {"level": level, "handlers": [], "propagate": True},
            "uvicorn.error": {"level": level, "handlers": [], "propagate": True},
            "uvicorn.access": {"level": "WARNING", "handlers": [], "propagate": False},
        },
    }
