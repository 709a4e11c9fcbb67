"""The exception tree of news-monitor.

Every error we raise on purpose derives from :class:`MonitorError`; foreign
exceptions (aiohttp, slack-sdk, aiosmtplib, sqlite3, yaml) are mapped to ours at
the boundary with ``raise ... from exc``::

    MonitorError
     ├── ConfigError          bad monitor.yaml, watchlist or template: path:line[:col]
     │    └── QueryError      a watchlist query that does not parse; carries the column
     ├── FetchError           one feed could not be fetched (DNS, timeout, 4xx/5xx, too big)
     ├── ParseError           one feed's body is not a feed we can read
     ├── StoreError           the state store failed or has an unknown schema
     └── DeliveryError        one destination refused or failed one alert
          └── PermanentDeliveryError   retrying will not help (invalid_auth, SMTP 5xx...)

"Not modified" and "no match" are return values, never exceptions.
"""

from __future__ import annotations


class MonitorError(Exception):
    """Root of every error news-monitor raises on purpose."""


class ConfigError(MonitorError):
    """A configuration problem, reported as ``path:line[:column]: message``."""

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        line: int | None = None,
        column: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.path = path
        self.line = line
        self.column = column

    def __str__(self) -> str:
        where = [str(p) for p in (self.path, self.line, self.column) if p is not None]
        return ":".join(where) + ": " + self.message if where else self.message


class QueryError(ConfigError):
    """A query string that does not parse. ``offset`` is 0-based within the query text."""

    def __init__(self, message: str, *, offset: int = 0) -> None:
        super().__init__(message)
        self.offset = offset


class FetchError(MonitorError):
    """One feed could not be fetched. ``retry_after`` is seconds the server asked us to wait."""

    def __init__(self, message: str, *, status: int | None = None,
                 retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


class ParseError(MonitorError):
    """A feed body that is not a feed we can read."""


class StoreError(MonitorError):
    """The state store failed. ``transient``: the same call may succeed if tried again
    (a lost connection, a server restarting, a lock or serialization conflict).
    ``where``: which store (its path), said where the error ends a command; a
    feed's recorded error leaves it out, for the reason to show."""

    def __init__(self, message: str, *, transient: bool = False,
                 where: str | None = None) -> None:
        super().__init__(message)
        self.transient = transient
        self.where = where


class DeliveryError(MonitorError):
    """One destination failed to take one alert; worth retrying later.

    ``retry_after`` is the delay in seconds the destination asked for (HTTP 429
    Retry-After), if any.
    """

    permanent = False

    def __init__(self, message: str, *, retry_after: float | None = None,
                 uncertain: bool = False) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        #: True when the request may have reached the destination (the connection
        #: broke or timed out after sending): look before sending again.
        self.uncertain = uncertain


class PermanentDeliveryError(DeliveryError):
    """The destination refused the alert for a reason retrying will not fix."""

    permanent = True
