"""Email destination: one multipart/alternative message per alert, over SMTP.

Each send opens one SMTP session with ``aiosmtplib.send`` (no connection is
kept between alerts, which arrive seconds to hours apart), inside
``asyncio.timeout``: aiosmtplib's own ``timeout`` is per socket operation,
ours bounds the whole send.

The Message-ID is ``<{alert.id}@news-monitor>``: alert ids are deterministic,
so a message re-sent after a crash carries the same id and mail clients (and
people) can recognise the duplicate.

Digests go through the same :meth:`EmailSender.send`: the outbox passes the
digest's :class:`~monitor.types.Rendered` with an Alert whose ``id`` is the
digest's key (only ``id`` is read here), so a digest gets a deterministic
Message-ID too.

Foreign errors are mapped at this boundary::

    SMTP reply 5xx (refused sender, recipients, data, AUTH)  -> PermanentDeliveryError
    a feature we need is missing (AUTH, STARTTLS)            -> PermanentDeliveryError
    SMTP reply 4xx, connection refused/lost, timeout, TLS    -> DeliveryError

Passwords never appear in messages or logs.
"""

from __future__ import annotations

import asyncio
import logging
import re
import ssl
from collections.abc import Sequence
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime
from typing import ClassVar

from monitor import redact
from monitor.errors import DeliveryError, PermanentDeliveryError
from monitor.sanitize import cap, strip_control
from monitor.types import Alert, Receipt, Rendered

logger = logging.getLogger(__name__)

MESSAGE_ID_DOMAIN = "news-monitor"
SUBJECT_MAX = 250  # characters; mail clients show far fewer
_NOT_ATEXT = re.compile(r"[^A-Za-z0-9!#$%&'*+\-/=?^_`{|}~.]")


def message_id(key: str) -> str:
    """The deterministic Message-ID for an alert (or digest) id, angle brackets included."""
    left = _NOT_ATEXT.sub("-", key).strip(".") or "alert"
    left = re.sub(r"\.{2,}", ".", left)
    return f"<{left}@{MESSAGE_ID_DOMAIN}>"


class EmailSender:
    """Sends alerts by SMTP to a fixed list of recipients.

    ``tls=True`` speaks TLS from the start (port 465 by default);
    ``starttls=True`` requires STARTTLS, ``False`` never upgrades, ``None``
    upgrades when the server offers it (port 587 when True, else 25).
    ``tls_context`` or ``cert_bundle`` (a CA file) replace the system's trust
    store, e.g. for a private CA or for tests.
    """

    kind: ClassVar[str] = "email"

    def __init__(
        self,
        name: str,
        *,
        host: str,
        port: int | None = None,
        starttls: bool | None = None,
        tls: bool = False,
        username: str | None = None,
        password: str | None = None,
        sender: str,
        to: Sequence[str],
        timeout: float = 30.0,
        tls_context: ssl.SSLContext | None = None,
        cert_bundle: str | None = None,
    ) -> None:
        if tls and starttls:
            raise ValueError(f"email destination {name!r}: tls and starttls exclude each other")
        if not to:
            raise ValueError(f"email destination {name!r}: no recipients")
        self.name = name
        self.host = host
        self.port = port
        self.starttls = starttls
        self.tls = tls
        self.username = username
        self._password = password
        self.sender = sender
        self.to = tuple(to)
        self.timeout = timeout
        self._tls_context = tls_context
        self._cert_bundle = cert_bundle
        #: alert id -> recipients still to get it: those a server refused for now
        #: (4xx: greylisting, a full mailbox) while it took the others. Kept in
        #: memory: after a restart the retry goes to all of them (at least once).
        self._owed: dict[str, tuple[str, ...]] = {}

    def __repr__(self) -> str:  # no password
        return f"EmailSender({self.name!r}, host={self.host!r}, to={list(self.to)!r})"

    def build(
        self, alert: Alert, message: Rendered, *, now: datetime | None = None
    ) -> EmailMessage:
        """The email for ``alert``: text part, HTML part when rendered, fixed Message-ID."""
        msg = EmailMessage()
        msg["Message-ID"] = message_id(alert.id)
        msg["Date"] = format_datetime(now or datetime.now(UTC))
        msg["From"] = self.sender
        msg["To"] = ", ".join(self.to)
        # One line of at most SUBJECT_MAX characters: folding a header is
        # superlinear in its length, and a header must hold no control character.
        subject = cap(" ".join(strip_control(message.subject).split()), SUBJECT_MAX)
        msg["Subject"] = subject or "[news-monitor]"
        msg["X-News-Monitor-Alert"] = alert.id
        msg.set_content(strip_control(message.text or "", keep_lines=True))
        if message.html:
            msg.add_alternative(strip_control(message.html, keep_lines=True), subtype="html")
        return msg

    async def send(self, alert: Alert, message: Rendered) -> Receipt:
        """Send one message. The receipt's ``remote_id`` is the Message-ID."""
        import aiosmtplib  # here: a service that sends no mail never loads it

        msg = self.build(alert, message)
        where = f"email destination {self.name!r} ({self.host})"
        recipients = self._owed.get(alert.id, self.to)
        try:
            async with asyncio.timeout(self.timeout):
                errors, _ = await aiosmtplib.send(
                    msg,
                    recipients=list(recipients),
                    hostname=self.host,
                    port=self.port,
                    username=self.username,
                    password=self._password,
                    use_tls=self.tls,
                    start_tls=self.starttls,
                    timeout=self.timeout,
                    tls_context=self._tls_context,
                    cert_bundle=self._cert_bundle,
                )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [r.code for r in exc.recipients]
            text = self._clean("; ".join(f"{r.recipient}: {r.code} {r.message}"
                                         for r in exc.recipients))
            error_type = PermanentDeliveryError if all(c >= 500 for c in codes) else DeliveryError
            raise error_type(f"{where}: recipients refused: {text}") from exc
        except aiosmtplib.SMTPResponseException as exc:
            error_type = PermanentDeliveryError if exc.code >= 500 else DeliveryError
            raise error_type(f"{where}: {type(exc).__name__} {exc.code} "
                             f"{self._clean(exc.message)}") from exc
        except aiosmtplib.SMTPNotSupported as exc:
            raise PermanentDeliveryError(f"{where}: {self._clean(str(exc))}") from exc
        except aiosmtplib.SMTPException as exc:
            # aiosmtplib raises a bare SMTPException when the server lacks STARTTLS
            # or AUTH that we were told to use: a configuration mismatch, not an outage.
            if type(exc) is aiosmtplib.SMTPException and "not supported" in str(exc):
                raise PermanentDeliveryError(f"{where}: {self._clean(str(exc))}") from exc
            raise DeliveryError(f"{where}: {type(exc).__name__}: {self._clean(str(exc))}") \
                from exc
        except (TimeoutError, OSError) as exc:
            reason = (
                "timed out" if isinstance(exc, TimeoutError)
                else f"{type(exc).__name__}: {self._clean(str(exc))}"
            )
            raise DeliveryError(f"{where}: {reason}") from exc
        except ValueError as exc:  # aiosmtplib refuses CR/LF/control characters in arguments
            raise PermanentDeliveryError(
                f"{where}: invalid message: {self._clean(str(exc))}") from exc
        if errors:  # some recipients refused, the others got it
            refused = ", ".join(f"{k} ({v.code})" for k, v in errors.items())
            later = tuple(k for k, v in errors.items() if v.code < 500)
            if later:  # refused for now: the retry goes to them alone, same Message-ID
                self._owed[alert.id] = later
                raise DeliveryError(f"{where}: recipients refused for now: "
                                    f"{self._clean(refused)} (the others got it)")
            logger.warning("email.partly_refused destination=%s alert=%s refused=%s",
                           self.name, alert.id, self._clean(refused))
        self._owed.pop(alert.id, None)
        return Receipt(remote_id=str(msg["Message-ID"]))

    def _clean(self, reply: str) -> str:
        """An SMTP reply as we may log and store it: the server wrote it, and one
        that echoes the AUTH exchange would otherwise hand it our password."""
        secrets = [self._password or ""]
        if self.username and self._password:
            import base64

            for blob in (f"\0{self.username}\0{self._password}", self._password):
                secrets.append(base64.b64encode(blob.encode()).decode())
        return redact.text(reply, 300, secrets=secrets)

    async def aclose(self) -> None:
        """Nothing to close: each send uses its own SMTP session."""
