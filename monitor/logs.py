"""Log lines: one per event, ``event key=value ...``, for a terminal, journald or a shipper.

Every message starts with an event name (``feed.polled``, ``alert.sent``) and
carries its context as ``key=value``. Three renderings of the same record:

* ``text`` (a terminal): ``2026-12-01T11:35:02Z INFO feed.polled feed=BBC new=3``
* under systemd (``$JOURNAL_STREAM`` set, stderr is the journal): no timestamp
  (journald adds its own) and a ``<N>`` priority prefix, so ``journalctl -p
  warning`` filters as it should (sd-daemon(3))
* ``json``: one object per line with ``time``, ``level``, ``logger``, ``event``,
  the ``key=value`` pairs as fields, and the whole ``message``

Control characters in a message (it may quote a feed or a server) are shown
escaped in every rendering, as in all our output.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Iterable, Mapping

from monitor.redact import MASK
from monitor.sanitize import ascii_json_safe, escape_control

#: syslog priorities for our levels, as sd-daemon(3) wants them
PRIORITY = {logging.CRITICAL: 2, logging.ERROR: 3, logging.WARNING: 4, logging.INFO: 6,
            logging.DEBUG: 7}


def priority(levelno: int) -> int:
    for level, prio in sorted(PRIORITY.items(), reverse=True):
        if levelno >= level:
            return prio
    return 7


def fields(message: str) -> tuple[str, dict[str, str]]:
    """The event name and the ``key=value`` pairs of a message (pure).

    A value runs to the next `` key=``, so ``error=cannot connect to x:443``
    stays whole.
    """
    words = message.split(" ")
    event = words[0] if words and "=" not in words[0] else ""
    out: dict[str, str] = {}
    key: str | None = None
    for word in words[1:] if event else words:
        k, sep, v = word.partition("=")
        if sep and k.isidentifier():
            key = k
            out[key] = v
        elif key is not None:
            out[key] += " " + word
    return event, out


#: Secrets known to this process (a database password, once its URL is opened),
#: masked in every log line: libraries log them in ways no pattern foresees
#: (psycopg_pool's 'invalid percent-encoded token: "Pa%ss"' while it retries).
_SECRETS: set[str] = set()


def hide(secrets: Iterable[str]) -> None:
    """Mask each of ``secrets`` (four characters or more) in every log line from now on."""
    _SECRETS.update(s for s in secrets if len(s) >= 4)


def _hidden(text: str) -> str:
    for secret in _SECRETS:
        if secret in text:
            text = text.replace(secret, MASK)
    return text


class TextFormatter(logging.Formatter):
    def __init__(self, journal: bool) -> None:
        super().__init__()
        self.journal = journal

    def format(self, record: logging.LogRecord) -> str:
        text = f"{record.levelname} {record.getMessage()}"
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        text = escape_control(_hidden(text))  # it can quote what a feed or a server sent
        if self.journal:
            # journald takes the prefix of the first line only; a traceback's
            # other lines join the same entry's priority as separate lines.
            prio = priority(record.levelno)
            return "\n".join(f"<{prio}>{line}" for line in text.splitlines())
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(record.created))
        return f"{stamp} {text}"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        message = _hidden(record.getMessage())
        event, pairs = fields(message)
        out: dict[str, object] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(), "logger": record.name, "event": event,
            **{k: v for k, v in pairs.items() if k not in ("time", "level", "logger", "event")},
            "message": message,
        }
        if record.exc_info:
            out["traceback"] = _hidden(self.formatException(record.exc_info))
        return ascii_json_safe(json.dumps(out, ensure_ascii=False))


def setup(level: int, fmt: str = "text", env: Mapping[str, str] | None = None) -> None:
    """Send every log record to stderr in ``fmt`` ("text" or "json")."""
    env = os.environ if env is None else env
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter(journal=bool(env.get("JOURNAL_STREAM"))))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for noisy in ("apscheduler", "aiohttp.access", "asyncio", "watchfiles"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
