"""How log lines are written (settings.LOGGING): text or JSON, one line per record,
whoever the logger and whatever the request put into its message, with the id of the
request being served."""

import json
import logging
import re
from contextvars import ContextVar
from datetime import UTC, datetime

from django.core.exceptions import SuspiciousOperation
from django.http import HttpRequest

# The id of the request being served (set by heroes_site.middleware.request_log), seen by
# everything that runs for it: its thread for sync work copies the context.
current_request_id: ContextVar[str | None] = ContextVar("current_request_id", default=None)
# Where request_log also keeps it, for what Django logs of a request after the middleware
# has returned (django.request's line for a 5xx response), with the request attached.
REQUEST_ID_KEY = "REQUEST_ID"  # in request.META, where no header can put it

# The attributes every LogRecord has; anything else was passed with `extra=`.
STANDARD_ATTRIBUTES = {*vars(logging.makeLogRecord({})), "message", "asctime"}

# Characters that end a line or drive a terminal (C0 and C1 controls, DEL, Unicode's
# line and paragraph separators) or reorder the text around them (bidi controls):
# in a path or header they would forge log lines or hide what was logged.
CONTROL_CHARACTERS = re.compile(
    "[\x00-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]"
)
ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def escape_control_character(match: re.Match) -> str:
    character = match.group()
    code = ord(character)
    return ESCAPES.get(character) or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")


def escape_control_characters(text: str) -> str:
    r"""`text` with each control character written as an escape: "\n" as "\\n", ESC as
    "\\x1b"."""
    return CONTROL_CHARACTERS.sub(escape_control_character, text)


def escape_lines(text: str) -> list[str]:
    """The lines of a multi-line text (a traceback), each escaped."""
    return [escape_control_characters(line) for line in text.split("\n")]


class RequestId(logging.Filter):
    """Gives each record written while a request is served that request's id
    (`request_id`), whichever logger writes it: errors and warnings too."""

    def filter(self, record: logging.LogRecord) -> bool:
        if hasattr(record, "request_id"):
            return True
        request = getattr(record, "request", None)
        if request_id := current_request_id.get() or (
            request.META.get(REQUEST_ID_KEY) if isinstance(request, HttpRequest) else None
        ):
            record.request_id = request_id
        return True


class TextFormatter(logging.Formatter):
    """`format`, then ` request_id=...` for a record with one (RequestId), with the
    line escaped so a record is one line; a traceback follows on lines of its own,
    indented, so that every line beginning at the left margin starts a record."""

    def format(self, record: logging.LogRecord) -> str:
        record.message = record.getMessage()
        if self.usesTime():
            record.asctime = self.formatTime(record, self.datefmt)
        line = self.formatMessage(record)
        if request_id := getattr(record, "request_id", None):
            line += f" request_id={request_id}"
        lines = [escape_control_characters(line)]
        if record.exc_info:
            lines += ["  " + line for line in escape_lines(self.formatException(record.exc_info))]
        if record.stack_info:
            lines += ["  " + line for line in escape_lines(self.formatStack(record.stack_info))]
        return "\n".join(lines)


class JsonFormatter(logging.Formatter):
    """One JSON object per line, with the fields passed as `extra=` at top level.

    Texts are escaped as in the text format, so a field read back (`jq -r .path`)
    cannot drive a terminal or split a line either.
    """

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": iso_time(record),
            "level": record.levelname,
            "logger": record.name,
            "message": escape_control_characters(record.getMessage()),
        }
        entry.update(
            (k, escape_control_characters(v) if isinstance(v, str) else v)
            for k, v in vars(record).items()
            if k not in STANDARD_ATTRIBUTES
        )
        if record.exc_info:
            entry["exception"] = "\n".join(escape_lines(self.formatException(record.exc_info)))
        return json.dumps(entry, default=lambda value: escape_control_characters(str(value)))


def iso_time(record: logging.LogRecord) -> str:
    """When the record was made: ISO 8601 in UTC, to the millisecond."""
    moment = datetime.fromtimestamp(record.created, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class SuspiciousRequestsAsWarnings(logging.Filter):
    """Django logs a SuspiciousOperation (too many fields, a forged Host header, ...)
    at ERROR with its traceback, then answers 400: the client's doing, not a fault
    of ours. Such a record is written as a one-line WARNING."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], SuspiciousOperation):
            # A handler's filter can only change the record itself (Python < 3.12).
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.exc_info = record.exc_text = None
        return True
