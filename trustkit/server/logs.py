"""Layer `server`: one log format, JSON lines, for everything the server writes.

The access log and the server's own events are already JSON objects (built by hand on the hot
path, see ``app._access_line``) and pass through as they are; every other record (the token
issuer, uvicorn's supervisor, a traceback) becomes ``{"time", "level", "logger", "msg"}`` with
the traceback as a string field, so a log shipper never meets a line it cannot parse.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any


class JsonLines(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if message.startswith("{") and not record.exc_info:
            return message  # one or more JSON lines made by the server itself
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": message,
        }
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def log_config(level: str) -> dict[str, Any]:
    """A ``logging.config.dictConfig`` for the server and uvicorn (which would otherwise set up
    its own text format in every worker)."""
    handler = {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonLines}},
        "handlers": {"stderr": handler},
        "loggers": {
            name: {"handlers": ["stderr"], "level": "WARNING", "propagate": False}
            for name in ("uvicorn", "uvicorn.error", "uvicorn.access")
        },
        "root": {"handlers": ["stderr"], "level": level.upper()},
    }


__all__ = ["JsonLines", "log_config"]
