"""Telling systemd how the service is doing: the sd_notify datagram protocol.

Under ``Type=notify`` systemd passes ``$NOTIFY_SOCKET``, a unix datagram socket
(a path, or ``@name`` in the abstract namespace). Each message is one datagram
of ``KEY=value`` lines: ``READY=1`` once we can do work, ``STATUS=...`` for
``systemctl status``, ``WATCHDOG=1`` to say we are alive when ``WatchdogSec=``
is set (systemd then passes ``$WATCHDOG_USEC``), ``RELOADING=1`` and
``STOPPING=1``. The protocol is a few lines, so it lives here rather than in a
dependency (see sd_notify(3)).

Without ``$NOTIFY_SOCKET`` (a terminal, cron, a test) every call is a no-op.
A failed send is logged at debug and never raised: telling systemd is
best-effort, the work is not.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Mapping

logger = logging.getLogger(__name__)


def watchdog_interval(env: Mapping[str, str], pid: int) -> float | None:
    """Seconds within which systemd wants WATCHDOG=1, or None when it wants none (pure).

    ``$WATCHDOG_PID``, when set, names the process meant: a child that inherited
    the environment must not answer for its parent.
    """
    usec = env.get("WATCHDOG_USEC", "")
    wanted_pid = env.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if wanted_pid and (not wanted_pid.isdigit() or int(wanted_pid) != pid):
        return None
    return int(usec) / 1_000_000


def _address(path: str) -> str:
    # "@name" is Linux's abstract namespace, spelled with a leading NUL on the wire.
    return "\0" + path[1:] if path.startswith("@") else path


class Notifier:
    """Sends sd_notify messages to one socket (or nowhere, when ``path`` is None)."""

    def __init__(self, path: str | None) -> None:
        self.path = path or None
        self._sock: socket.socket | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Notifier:
        env = os.environ if env is None else env
        return cls(env.get("NOTIFY_SOCKET"))

    @property
    def enabled(self) -> bool:
        return self.path is not None

    def send(self, **fields: str | int) -> bool:
        """Send one datagram of ``KEY=value`` lines; True if it went out.

        ``send(ready=1, status="ok")`` sends ``READY=1\\nSTATUS=ok``. Newlines
        inside a value would start a new field, so they become spaces.
        """
        if self.path is None:
            return False
        lines = [f"{k.upper()}={str(v).replace(chr(10), ' ')}" for k, v in fields.items()]
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            # Non-blocking: a datagram to a full or gone socket must not stall the event loop.
            self._sock.sendto("\n".join(lines).encode(), socket.MSG_DONTWAIT,
                              _address(self.path))
        except OSError as exc:
            logger.debug("notify.failed socket=%s error=%s", self.path, exc)
            return False
        return True

    def ready(self, status: str) -> bool:
        return self.send(ready=1, status=status)

    def status(self, status: str) -> bool:
        return self.send(status=status)

    def watchdog(self) -> bool:
        return self.send(watchdog=1)

    def reloading(self) -> bool:
        # MONOTONIC_USEC lets Type=notify-reload units match the READY=1 that follows.
        return self.send(reloading=1, monotonic_usec=time.monotonic_ns() // 1000)

    def stopping(self) -> bool:
        return self.send(stopping=1, status="stopping")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
