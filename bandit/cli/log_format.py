"""How every process of `mab serve` writes its log: text for people, or one JSON object per line
(BANDIT_LOG_FORMAT=json) for a collector; either way with the configured secrets blanked out.

One dictConfig (`logging_config`) configures the root logger and the servers' own loggers
(uvicorn's, granian's), so that nothing a process logs keeps another format. The main process
applies it (`configure_logging`); the workers, which uvicorn and granian start as fresh processes,
apply the same dictionary, which the servers hand them (bandit/cli/servers.py).

A JSON line holds `time` (RFC 3339, UTC, milliseconds), `level`, `logger`, `event` (the rendered
message), `experiment` and `arm` when the call passed them (`extra={"experiment": ...}`), any
other extra field, and `exc` (the traceback, one string) for an exception.
"""

from __future__ import annotations

import logging
import logging.config
import time
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote

import msgspec

from bandit.core.settings import Settings
from bandit.store.connection import url_passwords

#: The text format, as `mab` always wrote it.
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
#: What stands in a log line for a configured secret.
REDACTED = "[redacted]"
#: The servers' loggers: configured here so that none keeps a handler of its own format.
SERVER_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi", "_granian", "granian.access")

# Every attribute a LogRecord has of its own; any other was passed as `extra`. uvicorn adds
# `color_message`, the message again with terminal colours, which a JSON line has no use for.
_RECORD_ATTRIBUTES = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName", "color_message"}
_PLAIN = (str, int, float, bool, type(None))
_TRACEBACKS = logging.Formatter()


def _as_text(value: object) -> str:
    """An extra the JSON encoder cannot represent, as its repr: the line is still written."""
    try:
        return repr(value)
    except Exception:  # a broken __repr__ must not lose the record
        return f"<unrepresentable {type(value).__name__}>"


_ENCODER = msgspec.json.Encoder(enc_hook=_as_text)


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {
        key: value for key, value in vars(record).items() if key not in _RECORD_ATTRIBUTES and not key.startswith("_")
    }


def rfc3339_utc(timestamp: float) -> str:
    """E.g. 2025-01-31T12:00:00.123Z."""
    seconds = int(timestamp)
    milliseconds = min(999, int((timestamp - seconds) * 1000))
    return f"{time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(seconds))}.{milliseconds:03d}Z"


class JsonLinesFormatter(logging.Formatter):
    """One JSON object per record, on one line (a traceback is one string field)."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": rfc3339_utc(record.created),
            "level": record.levelname,
            "logger": record.name,
            "event": record.getMessage(),
        }
        extras = _extras(record)
        for key in ("experiment", "arm"):  # first, where a reader looks for them
            if key in extras:
                line[key] = extras.pop(key)
        for key, value in extras.items():
            line.setdefault(key, value)  # an extra never replaces the fields above
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line["exc"] = record.exc_text
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return _encode(line)


def _encode(line: dict[str, Any]) -> str:
    try:
        return _ENCODER.encode(line).decode()
    except Exception:  # e.g. a dict with tuple keys, or a cycle: those fields as text, the rest as they are
        return _ENCODER.encode({key: _encodable(value) for key, value in line.items()}).decode()


def _encodable(value: object) -> object:
    try:
        _ENCODER.encode(value)
    except Exception:
        return _as_text(value)
    return value


class SecretRedaction(logging.Filter):
    """Replaces every configured secret with [redacted] in a record's message, traceback and extras.

    The second line of defence: no code should log a secret in the first place. On a handler, it
    sees every record the handler writes, whichever logger it came from. It also drops the query
    string from the servers' access-log lines, where a client may have put a credential.
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        # As given and percent-encoded (as in a URL); the longest first, so that a secret inside
        # another is not replaced first and the rest of the longer one left showing.
        forms = {form for secret in secrets if secret for form in (secret, quote(secret, safe=""))}
        self._secrets = sorted(forms, key=len, reverse=True)

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        _drop_access_query(record)
        if not self._secrets:
            return True
        try:
            message = record.getMessage()
        except Exception:  # arguments that do not fit the message: the handler reports that record
            return True
        redacted = self.redact(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        if record.exc_info and not record.exc_text:
            record.exc_text = _TRACEBACKS.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        for key, value in _extras(record).items():
            if isinstance(value, _PLAIN) and not isinstance(value, str):
                continue  # a number cannot hold a secret
            text = value if isinstance(value, str) else _as_text(value)
            redacted = self.redact(text)
            if redacted != text:
                setattr(record, key, redacted)
        return True


def _drop_access_query(record: logging.LogRecord) -> None:
    """uvicorn's access line shows the request target, granian's may show the query string."""
    if record.name == "uvicorn.access" and isinstance(record.args, tuple) and len(record.args) == 5:
        client, method, target, version, status = record.args
        record.args = (client, method, str(target).partition("?")[0], version, status)
    elif record.name == "granian.access" and isinstance(record.args, dict) and "query_string" in record.args:
        record.args = {**record.args, "query_string": ""}


def secret_values(settings: Settings) -> list[str]:
    """What must never appear in the log: the tokens, the decision-id keys, the Redis password."""
    configured = [
        settings.admin_token,
        settings.feedback_token,
        settings.metrics_token,
        settings.secret,
        settings.previous_secret,
    ]
    return [value for value in configured if value] + url_passwords(settings.redis_url)


def logging_config(settings: Settings) -> dict[str, Any]:
    """The dictConfig of every process of the service: the format and level `settings` name, to
    stderr, with the secrets redacted; the servers' loggers write through the same handler."""
    formatter: dict[str, Any] = {"()": JsonLinesFormatter} if settings.log_format == "json" else {"format": TEXT_FORMAT}
    return {
        "version": 1,
        # The loggers modules created at import (`mab`, `mab.proxy`...) keep working.
        "disable_existing_loggers": False,
        # A frozenset, which dictConfig leaves alone: in a list it would resolve a secret that
        # happens to read "ext://..." or "cfg://...".
        "filters": {"secrets": {"()": SecretRedaction, "secrets": frozenset(secret_values(settings))}},
        "formatters": {"service": formatter},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stderr",
                "formatter": "service",
                "filters": ["secrets"],
            }
        },
        "root": {"level": settings.log_level.upper(), "handlers": ["stderr"]},
        "loggers": {
            # No handler of their own (the servers' defaults have theirs): they reach the root's.
            **{name: {"handlers": [], "propagate": True} for name in SERVER_LOGGERS},
            # httpx logs every request at INFO with its full URL, query string and all.
            "httpx": {"level": "WARNING"},
        },
    }


def configure_logging(settings: Settings | None = None) -> None:
    """Configure this process's logging from `settings` (None: text at INFO, no secrets known yet)."""
    logging.config.dictConfig(logging_config(settings or Settings()))
