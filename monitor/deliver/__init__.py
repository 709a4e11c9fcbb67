"""Delivery: one Sender per destination type, and the outbox worker that drives them.

Each sender takes an alert and its rendered message and either returns a
:class:`~monitor.types.Receipt` or raises :class:`~monitor.errors.DeliveryError`
(retry later, maybe after ``retry_after`` seconds) or
:class:`~monitor.errors.PermanentDeliveryError` (do not retry). One ``send`` is
one attempt; retries, pacing and ordering belong to the outbox. Each sender
class has a ``kind`` ("slack", "email", "console") naming the template family
it takes.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from monitor.deliver.console import ConsoleSender
    from monitor.deliver.email import EmailSender
    from monitor.deliver.slack import SlackSender

__all__ = ["ConsoleSender", "EmailSender", "SlackSender"]

_MODULES = {"ConsoleSender": "console", "EmailSender": "email", "SlackSender": "slack"}


def __getattr__(name: str) -> object:
    """Each sender's module is imported when its class is first asked for: a process
    with a console destination only never imports slack-sdk or aiosmtplib (nor
    does one importing ``monitor.deliver.outbox``)."""
    if name not in _MODULES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_MODULES[name]}"), name)
