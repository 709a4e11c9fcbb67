"""Slack destination: a bot token (chat.postMessage) or an incoming webhook.

One call here is one HTTP request, reads (history, the channel lookup) included.
slack-sdk's retry handlers are switched off (``retry_handlers=[]``), including
the connection-error one it installs by default, because the outbox worker owns
retries and pacing: it needs a 429's Retry-After handed back to it, not slept
away inside ``send``, and a retry it cannot see is one it cannot back off or count.

Foreign errors are mapped at this boundary::

    HTTP 429                          -> DeliveryError(retry_after=Retry-After)
    HTTP 408 / 5xx, connection error,
    timeout, unknown Slack error      -> DeliveryError
    other HTTP 4xx, Slack error codes
    retrying cannot fix (PERMANENT)   -> PermanentDeliveryError

Messages name the destination and Slack's error code, never the token or the
webhook URL (whose path is the secret). slack-sdk logs the webhook URL at
DEBUG, so its clients get a logger of their own that never logs below INFO.

With a bot token every post carries message metadata
``{"event_type": "news_monitor_alert", "event_payload": {"alert_id": ...}}``:
after a crash between "Slack stored it" and "we recorded it",
:meth:`SlackSender.find_posted` finds the message in the channel's history
instead of posting it twice. Webhooks return no ``ts``, so they can neither
be edited, threaded nor found again.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from monitor import redact
from monitor.errors import DeliveryError, PermanentDeliveryError
from monitor.render import mrkdwn_escape
from monitor.sanitize import strip_control
from monitor.types import Alert, Receipt, Rendered

# slack-sdk and aiohttp are imported at the first request, not with this module:
# a service with a Slack destination and nothing to send never loads them.
if TYPE_CHECKING:
    import aiohttp
    from slack_sdk.errors import SlackApiError
    from slack_sdk.web.async_client import AsyncWebClient
    from slack_sdk.web.async_slack_response import AsyncSlackResponse
    from slack_sdk.webhook.async_client import AsyncWebhookClient

logger = logging.getLogger(__name__)

# slack-sdk logs request URLs (for webhooks, the secret) at DEBUG: give it a
# logger that stays at INFO whatever the root level is.
_sdk_logger = logging.getLogger(__name__ + ".sdk")
_sdk_logger.setLevel(logging.INFO)

EVENT_TYPE = "news_monitor_alert"

#: Slack error codes that retrying will not fix.
PERMANENT = frozenset(
    {
        "access_denied",
        "account_inactive",
        "cannot_reply_to_message",
        "cant_update_message",
        "channel_is_archived",
        "channel_not_found",
        "edit_window_closed",
        "ekm_access_denied",
        "invalid_arg_name",
        "invalid_arguments",
        "invalid_auth",
        "invalid_blocks",
        "invalid_blocks_format",
        "invalid_metadata_format",
        "invalid_metadata_schema",
        "invalid_token",
        "is_archived",
        "message_not_found",
        "metadata_too_large",
        "method_deprecated",
        "missing_scope",
        "msg_too_long",
        "no_permission",
        "no_service",
        "no_text",
        "not_allowed_token_type",
        "not_authed",
        "not_in_channel",
        "org_login_required",
        "restricted_action",
        "team_access_not_granted",
        "token_expired",
        "token_revoked",
        "too_many_attachments",
    }
)

_CODE = re.compile(r"^[a-z0-9_]{1,64}$")
_CHANNEL_ID = re.compile(r"^[CGD][A-Z0-9]{6,}$")


class SlackSender:
    """Posts alerts to one Slack channel (bot token) or one incoming webhook.

    Give either ``token`` and ``channel`` (a name like ``#news`` or an id) or
    ``webhook_url``. ``base_url`` points the Web API elsewhere (tests).
    ``timeout`` bounds each request as a whole.
    """

    kind: ClassVar[str] = "slack"

    def __init__(
        self,
        name: str,
        *,
        token: str | None = None,
        channel: str | None = None,
        webhook_url: str | None = None,
        base_url: str = "https://slack.com/api/",
        thread_updates: bool = False,
        timeout: float = 20.0,
    ) -> None:
        if webhook_url and token:
            raise ValueError(f"slack destination {name!r}: give a token or a webhook_url, not both")
        if not webhook_url and not (token and channel):
            raise ValueError(f"slack destination {name!r}: needs token and channel, or webhook_url")
        self.name = name
        self.channel = channel
        self.thread_updates = thread_updates
        self.timeout = timeout
        self._token = token
        self._webhook_url = webhook_url
        self._base_url = base_url
        self._session: aiohttp.ClientSession | None = None
        self._web: AsyncWebClient | None = None
        self._hook: AsyncWebhookClient | None = None
        # the channel id Slack answered with; history and updates need an id
        self._channel_id: str | None = channel if channel and _CHANNEL_ID.match(channel) else None

    def __repr__(self) -> str:  # no secrets
        mode = "webhook" if self.webhook else f"channel={self.channel!r}"
        return f"SlackSender({self.name!r}, {mode})"

    def _secrets(self) -> tuple[str, ...]:
        """What must never appear in an error we raise."""
        return tuple(s for s in (self._token, self._webhook_url) if s)

    @property
    def webhook(self) -> bool:
        return self._webhook_url is not None

    # -- Sender protocol

    async def send(self, alert: Alert, message: Rendered) -> Receipt:
        """Post one message. Returns the ``ts`` and channel id (none for webhooks)."""
        if self._webhook_url is not None:
            await self._webhook_send(message)
            return Receipt()
        data = await self._call(
            "chat.postMessage",
            lambda client: client.chat_postMessage(
                channel=self._channel_id or self.channel or "",
                text=strip_control(message.text, keep_lines=True),
                blocks=_blocks(message),
                metadata={
                    "event_type": EVENT_TYPE,
                    "event_payload": {"alert_id": alert.id, "story_id": alert.story_id},
                },
                unfurl_links=False,
                unfurl_media=False,
            ),
        )
        ts, channel = str(data.get("ts") or ""), str(data.get("channel") or "")
        if channel:
            self._channel_id = channel
        logger.debug("slack.posted destination=%s alert=%s ts=%s", self.name, alert.id, ts)
        return Receipt(remote_id=ts or None, remote_channel=channel or None)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
        self._web = self._hook = None

    # -- Slack-only operations (the outbox looks for them with getattr)

    async def update(self, alert: Alert, message: Rendered) -> None:
        """Edit the message posted for ``alert`` in place (a no-op for webhooks)."""
        if self.webhook or not alert.remote_id:
            return
        channel = alert.remote_channel or await self._resolve_channel()
        ts = alert.remote_id
        await self._call(
            "chat.update",
            lambda client: client.chat_update(
                channel=channel, ts=ts, text=strip_control(message.text, keep_lines=True),
                blocks=_blocks(message) or [],
            ),
        )

    async def reply(self, alert: Alert, text: str, *, always: bool = False) -> None:
        """Reply in the alert's thread. ``text`` is plain text and is escaped here.

        A no-op unless ``thread_updates`` is on (or ``always``: a weak join the
        team must see) and the alert has a ``ts``. Replies carry no metadata,
        so :meth:`find_posted` never mistakes one for the alert itself.
        """
        if self.webhook or not (self.thread_updates or always) or not alert.remote_id:
            return
        channel = alert.remote_channel or await self._resolve_channel()
        ts = alert.remote_id
        await self._call(
            "chat.postMessage",
            lambda client: client.chat_postMessage(
                channel=channel,
                thread_ts=ts,
                text=mrkdwn_escape(strip_control(text)),
                unfurl_links=False,
                unfurl_media=False,
            ),
        )

    async def find_posted(
        self, alert_id: str, oldest: float | None = None, *, max_pages: int = 5
    ) -> Receipt | None:
        """The message already posted for ``alert_id``, from the channel's history.

        Looks through up to ``max_pages`` pages of 200 messages newer than
        ``oldest`` (a Unix time; default: the last 7 days) for our metadata.
        None for webhooks or when not found. Needs the ``channels:history``
        (or ``groups:history``) scope, and ``channels:read`` when the channel
        is configured by name rather than id.
        """
        if self.webhook:
            return None
        channel = await self._resolve_channel()
        since = time.time() - 7 * 86400 if oldest is None else oldest
        cursor: str | None = None
        for _ in range(max_pages):
            data = await self._call(
                "conversations.history",
                lambda client, page=cursor: client.conversations_history(  # type: ignore[misc]
                    channel=channel,
                    include_all_metadata=True,
                    limit=200,
                    oldest=f"{since:.6f}",
                    cursor=page,
                ),
            )
            for msg in data.get("messages") or ():
                meta = msg.get("metadata") or {}
                payload = meta.get("event_payload") or {}
                if meta.get("event_type") == EVENT_TYPE and payload.get("alert_id") == alert_id:
                    return Receipt(remote_id=str(msg.get("ts")), remote_channel=channel)
            cursor = (data.get("response_metadata") or {}).get("next_cursor") or None
            if not data.get("has_more") or not cursor:
                break
        return None

    # -- internals

    def _ensure_session(self) -> aiohttp.ClientSession:
        # Created lazily: an aiohttp session belongs to the running event loop.
        import aiohttp

        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))
            self._web = self._hook = None
        return self._session

    def _web_client(self) -> AsyncWebClient:
        """The Web API client, without retries: one attempt is one request, and the
        outbox owns retries, backoff, pacing and Retry-After."""
        from slack_sdk.web.async_client import AsyncWebClient

        session = self._ensure_session()
        if self._web is None:
            self._web = AsyncWebClient(
                token=self._token,
                base_url=self._base_url,
                timeout=int(max(1, self.timeout)),
                session=session,
                logger=_sdk_logger,
                retry_handlers=[],
            )
        return self._web

    def _webhook_client(self) -> AsyncWebhookClient:
        from slack_sdk.webhook.async_client import AsyncWebhookClient

        session = self._ensure_session()
        if self._hook is None:
            assert self._webhook_url is not None
            self._hook = AsyncWebhookClient(
                self._webhook_url,
                timeout=int(max(1, self.timeout)),
                session=session,
                logger=_sdk_logger,
                retry_handlers=[],
            )
        return self._hook

    async def _resolve_channel(self) -> str:
        """The channel's id: history wants an id, a config may give ``#name``."""
        if self._channel_id is not None:
            return self._channel_id
        wanted = (self.channel or "").lstrip("#")
        cursor: str | None = None
        for _ in range(20):
            data = await self._call(
                "conversations.list",
                lambda client, page=cursor: client.conversations_list(  # type: ignore[misc]
                    types="public_channel,private_channel",
                    exclude_archived=True,
                    limit=1000,
                    cursor=page,
                ),
            )
            for found in data.get("channels") or ():
                if found.get("name") == wanted:
                    self._channel_id = str(found["id"])
                    return self._channel_id
            cursor = (data.get("response_metadata") or {}).get("next_cursor") or None
            if not cursor:
                break
        raise PermanentDeliveryError(
            f"slack destination {self.name!r}: channel_not_found ({self.channel})"
        )

    async def _call(
        self,
        method: str,
        request: Callable[[AsyncWebClient], Awaitable[AsyncSlackResponse]],
    ) -> Mapping[str, Any]:
        """One Web API request; Slack's and aiohttp's errors become ours."""
        import aiohttp
        from slack_sdk.errors import SlackApiError, SlackClientError

        client = self._web_client()
        try:
            async with asyncio.timeout(self.timeout):
                response = await request(client)
        except SlackApiError as exc:
            raise self._api_error(method, exc) from exc
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise DeliveryError(
                f"slack destination {self.name!r}: {method} failed: {_describe(exc)}",
                uncertain=True,
            ) from exc
        except SlackClientError as exc:
            raise PermanentDeliveryError(
                f"slack destination {self.name!r}: {method} rejected by the client: "
                f"{redact.text(str(exc), 200, secrets=self._secrets())}"
            ) from exc
        data = response.data
        return data if isinstance(data, dict) else {}

    def _api_error(self, method: str, exc: SlackApiError) -> DeliveryError:
        response = exc.response
        status = int(getattr(response, "status_code", 0) or getattr(response, "status", 0) or 0)
        data = getattr(response, "data", None)
        code = str(data.get("error") or "") if isinstance(data, dict) else ""
        if code and not _CODE.match(code):  # a server may echo anything here, our token too
            code = "unrecognised_error"
        where = f"slack destination {self.name!r}"
        if self.channel and method in ("chat.postMessage", "chat.update", "conversations.history"):
            where += f" (channel {self.channel})"
        return _classify(where, method, status, code, _headers(response))

    async def _webhook_send(self, message: Rendered) -> None:
        import aiohttp

        client = self._webhook_client()
        where = f"slack destination {self.name!r} (webhook)"
        try:
            async with asyncio.timeout(self.timeout):
                response = await client.send(
                    text=strip_control(message.text, keep_lines=True),
                    blocks=_blocks(message),
                    unfurl_links=False,
                    unfurl_media=False,
                )
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            # `from None`: aiohttp's exceptions can quote the URL, whose path is the secret
            raise DeliveryError(
                f"{where}: webhook post failed: {_describe(exc)}", uncertain=True
            ) from None
        if response.status_code == 200:
            return
        body = (response.body or "").strip()
        code = body if _CODE.match(body) else ""
        raise _classify(where, "webhook", response.status_code, code, response.headers)


def _classify(
    where: str, method: str, status: int, code: str, headers: Mapping[str, Any]
) -> DeliveryError:
    """Decide retryable or permanent from the HTTP status and Slack's error code."""
    what = code or f"HTTP {status}"
    message = f"{where}: {method}: {what}"
    if status == 429:
        retry_after = _retry_after(headers)
        return DeliveryError(message + " (rate limited)", retry_after=retry_after)
    # A post the server answered badly may still have been stored (a gateway's 502
    # after Slack took it, a body cut short): the retry looks before it posts again.
    posted = method in ("chat.postMessage", "webhook")
    if status == 408 or status >= 500:
        return DeliveryError(message, uncertain=posted)
    if code in PERMANENT or 400 <= status < 500:
        return PermanentDeliveryError(message)
    # e.g. internal_error, fatal_error, ratelimited, or no status at all (an answer
    # that was not Slack's JSON)
    return DeliveryError(message, uncertain=posted and code != "ratelimited")


def _retry_after(headers: Mapping[str, Any]) -> float | None:
    for key, value in headers.items():
        if str(key).lower() == "retry-after":
            if isinstance(value, (list, tuple)):  # slack-sdk may hand over a list per header
                value = value[0] if value else None
            try:
                return float(int(str(value).strip()))
            except (TypeError, ValueError):
                return None
    return None


def _headers(response: object) -> Mapping[str, Any]:
    headers = getattr(response, "headers", None)
    return headers if isinstance(headers, Mapping) else {}


def _describe(exc: BaseException) -> str:
    """A short, secret-free description of a transport error."""
    import aiohttp

    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"cannot connect to {exc.host}:{exc.port}"
    return type(exc).__name__


def _blocks(message: Rendered) -> list[dict[str, Any]] | None:
    """The message's blocks with no control character in any string: JSON would
    carry them, and Slack shows them as garbage or refuses the message."""
    return [_clean(dict(block)) for block in message.blocks] if message.blocks else None


def _clean(value: Any) -> Any:
    if isinstance(value, str):
        return strip_control(value, keep_lines=True)
    if isinstance(value, Mapping):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value
