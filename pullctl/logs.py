"""Log lines on stderr. With ``PULLCTL_LOG_FORMAT=json`` every line is one JSON object, whoever writes it.

    json_line(level, event, **fields)  the one shape: {"ts", "level", "event", ...fields} (no newline)
    JsonLines(stream)                  writes such lines to a stream (``serve``, the run's observer, the CLI)
    JsonFormatter                      a stdlib log record as such a line (pullctl's, uvicorn's, a library's)
    StderrHandler                      writes to the ``sys.stderr`` of the moment (not the one at start-up)
    configure(log_format)              json: every logger's records as JSON lines; else pullctl's as text
    uvicorn_log_config()               the same for ``serve``'s uvicorn: its records as JSON lines too

Library code logs through ``logging.getLogger("pullctl...")`` with ``extra={"event": ...}``; third-party
loggers (the OpenTelemetry exporter, asyncio, mcp) reach the same handler through the root logger, and
``warnings.warn`` does too in json mode. Structured lines with fields of their own (a run's progress,
``serve``'s triggers, the CLI's errors in json mode) go through one ``JsonLines`` writer.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import IO, Any


def json_line(level: str, event: str, *, at: float | None = None, **fields: Any) -> str:
    """One line, no newline: ``ts`` (``at``, epoch seconds, else now), ``level``, ``event``, the fields."""
    line = {"ts": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at)), "level": level, "event": event}
    line.update(fields)
    return json.dumps(line, default=str, ensure_ascii=False)


class JsonLines:
    """Writes ``json_line``s, one per call, to ``stream`` (else the ``sys.stderr`` of the moment), flushed."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self._stream = stream

    @property
    def stream(self) -> IO[str]:
        return self._stream or sys.stderr

    def __call__(self, level: str, event: str, **fields: Any) -> None:
        self.stream.write(json_line(level, event, **fields) + "\n")
        self.stream.flush()


class JsonFormatter(logging.Formatter):
    """A log record as a JSON line: ``event`` from ``extra={"event": ...}``, else ``default_event``."""

    def __init__(self, default_event: str = "log") -> None:
        super().__init__()
        self.default_event = default_event

    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, Any] = {"logger": record.name, "message": record.getMessage()}
        if record.exc_info:
            fields["traceback"] = self.formatException(record.exc_info)
        event = getattr(record, "event", None) or self.default_event
        return json_line(record.levelname.lower(), event, at=record.created, **fields)


class TextFormatter(logging.Formatter):
    """``warning: message``, the way the CLI writes its own warnings and errors."""

    def format(self, record: logging.LogRecord) -> str:
        text = f"{record.levelname.lower()}: {record.getMessage()}"
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


class StderrHandler(logging.Handler):
    """Writes each record to the current ``sys.stderr`` (a test's capture, a redirected stream)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(self.format(record) + "\n")
            sys.stderr.flush()
        except Exception:
            self.handleError(record)


def configure(log_format: str) -> None:
    """``json``: the root logger gets one JSON ``StderrHandler``, so every logger's records (pullctl's and any
    library's) are JSON lines, and Python warnings too. Otherwise only the ``pullctl`` logger gets a
    ``level: message`` handler; libraries keep the stdlib's behaviour (those with a ``NullHandler``, such as
    urllib3, stay silent). Idempotent: a second call replaces the first one's handler. Levels are left
    alone: WARNING and above reach stderr."""
    for logger in (logging.getLogger(), logging.getLogger("pullctl")):
        for handler in [h for h in logger.handlers if isinstance(h, StderrHandler)]:
            logger.removeHandler(handler)
    handler = StderrHandler()
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
        logging.getLogger().addHandler(handler)
        logging.captureWarnings(True)  # a Python warning is a multi-line text otherwise
    else:
        handler.setFormatter(TextFormatter())
        logging.getLogger("pullctl").addHandler(handler)


def uvicorn_log_config(level: str = "info") -> dict[str, Any]:
    """A ``logging.config.dictConfig`` for uvicorn: JSON lines on stderr, no access log. uvicorn's records
    say ``"event": "server"``; every other logger (pullctl's, the OpenTelemetry exporter's, asyncio's)
    reaches the root logger's JSON handler, so no plain-text line gets into the stream."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "server": {"()": "pullctl.logs.JsonFormatter", "default_event": "server"},
            "json": {"()": "pullctl.logs.JsonFormatter"},
        },
        "handlers": {
            "server": {"class": "pullctl.logs.StderrHandler", "formatter": "server"},
            "stderr": {"class": "pullctl.logs.StderrHandler", "formatter": "json"},
        },
        "loggers": {
            "uvicorn": {"handlers": ["server"], "level": level.upper(), "propagate": False},
            "uvicorn.error": {"level": level.upper()},
            "uvicorn.access": {"handlers": [], "level": "WARNING", "propagate": False},
        },
        "root": {"handlers": ["stderr"], "level": "WARNING"},
    }
