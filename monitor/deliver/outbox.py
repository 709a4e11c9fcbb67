"""The delivery worker: drains the outbox in the store, one lane per destination.

Guarantees (README, "Delivery guarantees"):

* An alert is marked sent only after the destination took it and the store
  committed that. A crash in between means it is sent again on the next start
  (at-least-once) ...
* ... except on Slack with a bot token: before re-sending an alert that was
  already attempted, the lane looks for it in the channel's recent history by
  the alert id carried in the message metadata, and records the found ``ts``
  instead of posting twice (exactly-once as far as Slack's history tells).
* Per destination and watchlist, alerts go out in the order their stories were
  found: a lane never sends alert n+1 while alert n waits for a retry.
* A lane is fair between watchlists: it takes the next watchlist's first
  alert in turn, so one watchlist's burst delays another's alert by at most
  one message per watchlist with alerts waiting. One feed's burst beyond a
  watchlist's ``max_per_poll`` arrives held ("max_per_poll") and goes out as
  one summary once the alerts found before it are sent.
* Transient failures (connection errors, 5xx, 429) retry with exponential
  backoff and jitter; a 429's Retry-After is honoured. Permanent failures
  (invalid_auth, channel_not_found, SMTP 5xx, ...) stop that alert and leave it
  ``failed`` (dead letter) with the reason; ``news-monitor alerts retry``
  re-queues it. Alerts still failing after ``give_up_after`` are dead-lettered
  too.
* Slack is paced to at most one message per ``min_interval`` per destination
  (one channel each); bursts queue, nothing is dropped.
* Every call to a destination counts as an attempt and backs off the same way:
  the history lookup before a re-send, edits and replies included.
* Several instances sharing a store: each lane is driven by one of them at
  a time, the holder of its ``lane:<destination>`` lease (``owner``), renewed
  at every step, so order, pacing and digests stay per destination; a dead
  holder's lane is taken over when its ``lease`` runs out.
* ``stop()`` lets each lane finish the alert in hand and take no new one, so a
  shutdown never cuts a delivery off half-way; ``drain(within=...)`` keeps the
  backoff inside its bound, so ``run --once`` tries until its deadline.

Each outcome is reported to ``on_outcome`` (the service counts and measures them).
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
import logging
import random
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Protocol, TypeVar

from monitor import redact
from monitor.errors import ConfigError, DeliveryError, PermanentDeliveryError, StoreError
from monitor.render import Renderer
from monitor.sanitize import cap
from monitor.store import SqlStore
from monitor.types import Alert, AlertStatus, Rendered, Sender

logger = logging.getLogger(__name__)

_T = TypeVar("_T")

#: Stories a digest lists per watchlist (its counts stay whole): rendering runs on
#: the event loop, and a flood's "…and 1,980 more" summary must stay cheap.
DIGEST_ITEMS = 50

#: Thread replies one update of a story posts about its new members at most; the
#: rest are counted in one more: a story many outlets join at once (or one that
#: draws weak joins by the hundred) must not flood its thread.
REPLIES_PER_UPDATE = 5


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    base: float = 1.0  # seconds before the first retry
    # Longest wait between tries. An alert is worth little late, and a paced
    # destination sees at most a couple of tries a minute during an outage.
    cap: float = 30.0
    give_up_after: timedelta = timedelta(hours=24)
    # The longest Retry-After honoured: a lane waits for its head alert, so a
    # proxy's "Retry-After: 2592000" held every alert of the destination for a
    # month (and 10**12 overflowed the date). Slack asks for seconds.
    retry_after_cap: float = 900.0

    def delay(self, attempts: int, retry_after: float | None, rng: random.Random) -> float:
        """Seconds before the next try after ``attempts`` failed tries (pure)."""
        if retry_after is not None:
            asked = float(retry_after)
            asked = min(asked, self.retry_after_cap) if asked > 0 else 0.0  # NaN: 0
            return asked + rng.random() * 0.25
        backoff = min(self.cap, self.base * 2.0 ** max(0, attempts - 1))
        return backoff * (0.5 + rng.random())  # full jitter around the backoff

    def within(self, delay: float, remaining: float | None, retry_after: float | None) -> float:
        """``delay`` shortened to fit the ``remaining`` seconds of a bounded drain (pure).

        The last try is placed ``base`` before the end, leaving it time to be made.
        A server's Retry-After is honoured, not shortened; with too little time
        left for a useful try the delay stands, and the drain ends.
        """
        if remaining is None or retry_after is not None or delay <= remaining - self.base:
            return delay
        return remaining - self.base if remaining >= 2 * self.base else delay


class Outcome(enum.Enum):
    """What one delivery attempt came to, as reported to ``on_outcome``."""

    SENT = "sent"
    RETRY = "retry"
    FAILED = "failed"


def digest_title(reasons: set[str], groups: Mapping[str, Sequence[Alert]], n: int) -> str:
    """The headline of a digest message (pure)."""
    stories = f"{n} {'story' if n == 1 else 'stories'}"
    names = ", ".join(groups)
    if reasons == {"digest"}:
        return f"Digest: {stories} for {names}"
    if reasons == {"quiet hours"}:
        return f"While it was quiet: {stories} for {names}"
    if reasons == {"max_per_hour"}:
        return f"{n} more {'story' if n == 1 else 'stories'} for {names}"
    if reasons == {"max_per_poll"}:
        feeds = ", ".join(sorted({a.entry.feed for alerts in groups.values() for a in alerts}))
        return f"…and {n:,} more {'story' if n == 1 else 'stories'} from {feeds} for {names}"
    return f"{stories} for {names}"


def _inflight(destination: str) -> str:
    """The meta key noting a destination's digest in flight: its id and members."""
    return f"digest-inflight:{destination}"


def pick_fair(heads: Sequence[Alert], last: str | None) -> Alert:
    """Round robin between watchlists: the head of the first watchlist (by name)
    after ``last``, wrapping around (pure). ``heads`` is not empty."""
    ordered = sorted(heads, key=lambda a: a.watchlist)
    if last is not None:
        for a in ordered:
            if a.watchlist > last:
                return a
    return ordered[0]


class StoreCall(Protocol):
    """Runs a store method and gives its result: ``await call(store.pending, name)``."""

    def __call__(self, fn: Callable[..., _T], /, *args: Any) -> Awaitable[_T]: ...


async def _inline(fn: Callable[..., _T], /, *args: Any) -> _T:
    return fn(*args)


def kind_of(sender: Sender) -> str:
    """Which template family a sender takes: slack, email or console."""
    return str(getattr(sender, "kind", None) or type(sender).__name__.removesuffix("Sender")
               .lower())


class Outbox:
    """Sends queued alerts. ``run()`` works until cancelled; ``drain()`` empties what is due."""

    def __init__(
        self,
        store: SqlStore,
        senders: Mapping[str, Sender],
        renderer: Renderer,
        *,
        now: Callable[[], datetime],
        policy: RetryPolicy | None = None,
        min_interval: Mapping[str, float] | None = None,
        rng: random.Random | None = None,
        on_outcome: Callable[[Outcome, Alert], None] | None = None,
        call: StoreCall | None = None,
        owner: str | None = None,
        lease: timedelta = timedelta(seconds=60),
    ) -> None:
        self.store = store
        # Every store call goes through this: the service runs them on the store's
        # thread, so the loop never waits on the store's lock (inline by default).
        self._store: StoreCall = call or _inline
        self.owner = owner  # None: the only instance, nothing to claim
        self.lease = lease
        self.senders = dict(senders)
        self.renderer = renderer
        self.now = now
        self.policy = policy or RetryPolicy()
        self.min_interval = dict(min_interval or {})
        self.rng = rng or random.Random()
        self._wake: dict[str, asyncio.Event] = {name: asyncio.Event() for name in self.senders}
        self._last_sent: dict[str, float] = {}
        self._flush_after: dict[str, float] = {}
        self._flush_attempts: dict[str, int] = {}
        self._last_watchlist: dict[str, str] = {}  # per lane: whose alert went last
        self._update_backoff: dict[str, tuple[int, float]] = {}  # alert -> (tries, not before)
        self._on_outcome = on_outcome
        self._bundled: Renderer | None = None  # the fallback when a template fails
        self._deadline: float | None = None  # loop time a bounded drain ends
        self._stopping = False

    def stop(self) -> None:
        """Finish the alert in hand on each lane, take no new one: ``run()`` returns."""
        self._stopping = True
        self.wake()

    def _remaining(self) -> float | None:
        if self._deadline is None:
            return None
        return max(0.0, self._deadline - asyncio.get_running_loop().time())

    def _report(self, outcome: Outcome, alert: Alert) -> None:
        if self._on_outcome is not None:
            self._on_outcome(outcome, alert)

    def wake(self) -> None:
        """New alerts were queued: let every lane look."""
        for ev in self._wake.values():
            ev.set()

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            for name in self.senders:
                tg.create_task(self._lane_forever(name), name=f"outbox:{name}")

    async def drain(self, within: float = 60.0) -> int:
        """Deliver every queued alert that can go within ``within`` seconds, then return.

        Used by ``run --once``. Returns how many alerts are still queued.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        self._deadline = deadline
        try:
            # A send in hand at the deadline is cut off: it is marked maybe-sent and
            # reconciled on the next run rather than holding the run past its bound.
            async with asyncio.timeout(within), asyncio.TaskGroup() as tg:
                for name in self.senders:
                    tg.create_task(self._lane_until_empty(name, deadline))
        except TimeoutError:
            logger.warning("outbox.drain_cut within=%.0fs", within)
        finally:
            self._deadline = None
        left = 0
        for name in self.senders:
            left += len(await self._store(self.store.pending, name))
        return left

    async def _lane_forever(self, name: str) -> None:
        while not self._stopping:
            try:
                wait = await self._step(name)
            except StoreError as exc:  # the disk full, the database away: no bug
                logger.warning("outbox.store_failed destination=%s error=%s (tries again in "
                               "5 s)", name, redact.text(str(exc)))
                wait = 5.0
            except Exception:
                logger.exception("outbox.lane_crash destination=%s (starts again in 5 s)", name)
                wait = 5.0
            if wait is None:
                continue
            ev = self._wake[name]
            ev.clear()
            if self._stopping:
                return
            try:
                async with asyncio.timeout(wait):
                    await ev.wait()
            except TimeoutError:
                pass

    async def _lane_until_empty(self, name: str, deadline: float) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                wait = await self._step(name)
            except Exception:  # a bug: this lane ends, the others and the run go on
                logger.exception("outbox.lane_crash destination=%s (left for the next run)",
                                 name)
                return
            if wait is None:
                continue
            if wait >= 3600 or loop.time() + wait > deadline:
                return
            await asyncio.sleep(wait)

    async def _step(self, name: str) -> float | None:
        """Do one unit of work for a lane. Returns None to go again at once, else
        the seconds to wait (3600 when idle)."""
        loop = asyncio.get_running_loop()
        sender = self.senders[name]
        if self.owner is not None:
            now = self.now()
            if not await self._store(self.store.claim, f"lane:{name}", self.owner, now,
                                     now + self.lease):
                return self.lease.total_seconds() / 4  # another instance drives it
        for alert in await self._store(self.store.updates_due_for, name):
            tries, after = self._update_backoff.get(alert.id, (0, 0.0))
            if loop.time() >= after:
                await self._update(sender, alert, tries)
        now = self.now()
        paced = self._pace_wait(name)
        # In order within a watchlist: no overtaking.
        heads = await self._store(self.store.lane_heads, name)
        waiting = [a.next_attempt_at for a in heads
                   if a.next_attempt_at is not None and a.next_attempt_at > now]
        if loop.time() >= self._flush_after.get(name, 0.0):
            held = await self._store(self.store.held_due, name, now)
            # A "max_per_poll" summary follows the alerts found before it.
            first = min((h.seq for h in held), default=0)
            if held and not (heads and not waiting and heads[0].seq < first):
                if paced:
                    return paced
                await self._flush(sender, held)
                self._last_sent[name] = loop.time()
                return None
        if not heads:
            return await self._idle_wait(name, now)
        if waiting:  # the destination is failing: wait for the retry, send nothing else
            return min((min(waiting) - now).total_seconds(), await self._idle_wait(name, now))
        if paced:
            return paced
        alert = pick_fair(heads, self._last_watchlist.get(name))
        await self._deliver(sender, alert)
        self._last_watchlist[name] = alert.watchlist
        self._last_sent[name] = loop.time()
        return None

    def _pace_wait(self, name: str) -> float:
        """Seconds until the destination may take another message (0: now)."""
        gap = self.min_interval.get(name, 0.0)
        last = self._last_sent.get(name)
        if not gap or last is None:
            return 0.0
        return max(0.0, gap - (asyncio.get_running_loop().time() - last))

    async def _idle_wait(self, name: str, now: datetime) -> float:
        """Nothing queued: sleep until the next held alert is due (or an hour)."""
        due = await self._store(self.store.next_hold, name)
        if due is None:
            return 3600.0
        wait = max(0.05, (due - now).total_seconds())
        retry_at = self._flush_after.get(name)
        if retry_at is not None:
            wait = max(wait, retry_at - asyncio.get_running_loop().time())
        return min(wait, 3600.0)

    async def _flush(self, sender: Sender, held: Sequence[Alert]) -> None:
        """Send held alerts whose time has come as one digest message.

        Digests, quiet-hour flushes and "N more stories" summaries all arrive
        here. The digest in flight is noted first (its id, derived from its
        members, and the members), so one whose answer never came (a crash, a
        lost connection) is looked for in Slack's history by that id before
        anything more is sent: its members are not listed again, even when
        other alerts came due meanwhile and the next digest is another set.
        """
        name = sender.name
        left = await self._settle_inflight(sender, held)
        if not left:  # all of them went out already, or the lookup waits for a retry
            return
        held = left
        ids = [a.id for a in held]
        digest_id = "d" + hashlib.sha256("\0".join(sorted(ids)).encode()).hexdigest()[:19]
        reasons = {a.hold_reason or "" for a in held}
        groups: dict[str, list[Alert]] = {}
        for a in held:
            groups.setdefault(a.watchlist, []).append(a)
        title = digest_title(reasons, groups, len(held))
        carrier = replace(held[0], id=digest_id)
        marker = _inflight(name)
        listed = [a for alerts in groups.values() for a in alerts[:DIGEST_ITEMS]]
        stories = {}
        for a in listed:
            if (story := await self._store(self.store.story, a.story_id)) is not None:
                stories[a.story_id] = story
        try:
            message = self._rendered(f"digest={digest_id}", lambda r: r.digest(
                kind_of(sender), title, list(groups.items()), stories, max_items=DIGEST_ITEMS))
        except DeliveryError as exc:
            logger.warning("digest.failed destination=%s alerts=%d reason=%s", name,
                           len(ids), redact.text(str(exc)))
            for aid in ids:
                await self._store(self.store.mark_failed, aid, redact.text(str(exc)))
            return
        await self._store(self.store.set_meta, marker, f"{digest_id} {','.join(ids)}")
        try:
            await sender.send(carrier, message)
        except DeliveryError as exc:
            reason = redact.text(str(exc))
            if exc.permanent:
                logger.warning("digest.failed destination=%s alerts=%d reason=%s", name,
                               len(ids), reason)
                for aid in ids:
                    await self._store(self.store.mark_failed, aid, reason)
                await self._store(self.store.delete_meta, marker)
                return
            if not exc.uncertain:  # refused (a 429, say): nothing landed, nothing to look for
                await self._store(self.store.delete_meta, marker)
            self._retry_flush(name, len(ids), exc)
            return
        self._flush_attempts.pop(name, None)
        self._flush_after.pop(name, None)
        await self._store(self.store.mark_status, ids, AlertStatus.FOLDED, self.now())
        # Done: folded alerts are never flushed again.
        await self._store(self.store.delete_meta, marker)
        logger.info("digest.sent destination=%s alerts=%d title=%r", name, len(ids), title)

    async def _settle_inflight(self, sender: Sender, held: Sequence[Alert]) -> list[Alert]:
        """``held`` less the members of a digest noted in flight that is found posted
        (folded now); empty when the lookup failed for now (retried later). The
        note is gone afterwards: found, or not there to find."""
        name = sender.name
        marker = _inflight(name)
        noted = await self._store(self.store.get_meta, marker)
        if noted is None:
            return list(held)
        digest_id, _, members = noted.partition(" ")
        find = getattr(sender, "find_posted", None)
        found = None
        if find is not None:
            try:
                found = await find(digest_id)
            except DeliveryError as exc:
                if not exc.permanent:  # it may be there: look again, do not post twice
                    self._retry_flush(name, len(held), exc)
                    return []
                self._cannot_look(name, digest_id, exc)
        if found is not None:
            posted = set(filter(None, members.split(",")))
            await self._store(self.store.mark_status, sorted(posted), AlertStatus.FOLDED,
                              self.now())
            logger.info("digest.reconciled destination=%s digest=%s alerts=%d", name,
                        digest_id, len(posted))
            self._flush_attempts.pop(name, None)
            self._flush_after.pop(name, None)
            held = [a for a in held if a.id not in posted]
        await self._store(self.store.delete_meta, marker)
        return list(held)

    def _retry_flush(self, name: str, alerts: int, exc: DeliveryError) -> None:
        """A digest's try failed for now: the lane flushes again after the backoff."""
        attempts = self._flush_attempts.get(name, 0) + 1
        self._flush_attempts[name] = attempts
        delay = self.policy.within(self.policy.delay(attempts, exc.retry_after, self.rng),
                                   self._remaining(), exc.retry_after)
        self._flush_after[name] = asyncio.get_running_loop().time() + delay
        logger.warning("digest.retry destination=%s alerts=%d attempt=%d in=%.1fs reason=%s",
                       name, alerts, attempts, delay, redact.text(str(exc)))

    def _cannot_look(self, name: str, message_id: str, exc: DeliveryError) -> None:
        """The lookup before a re-send is refused for good (an app without
        channels:history, say): posting again may make a duplicate, which costs a
        reader seconds; failing the alert would lose it."""
        logger.warning("alert.reconcile_failed id=%s destination=%s reason=%s (posting it "
                       "again; give the app channels:history to look first)", message_id,
                       name, redact.text(str(exc)))

    def _rendered(self, what: str, make: Callable[[Renderer], Rendered]) -> Rendered:
        """``make`` with the configured templates, else with the bundled ones: a user's
        template that fails on one alert (a filter on a link the item lacks) must
        neither lose it nor stop its destination's lane behind it. Raises a
        permanent DeliveryError when neither renders."""
        try:
            return make(self.renderer)
        except ConfigError as exc:
            error = exc
        from monitor.config import BUNDLED_TEMPLATES

        if self.renderer.template_dir.resolve() != BUNDLED_TEMPLATES.resolve():
            # Not redact.text: the template's own path and line are the point, and
            # its context holds no secret (the log escapes what a feed sent).
            logger.error("template.failed %s error=%s (sent with the bundled templates; "
                         "mend the template)", what, cap(str(error), 500))
            if self._bundled is None:
                self._bundled = Renderer(BUNDLED_TEMPLATES)
            try:
                return make(self._bundled)
            except ConfigError as exc:
                error = exc
        raise PermanentDeliveryError(f"cannot render it: {error}") from error

    async def render(self, sender: Sender, alert: Alert) -> Rendered:
        story = await self._store(self.store.story, alert.story_id)
        return self._rendered(f"alert={alert.id}",
                              lambda r: r.alert(kind_of(sender), alert, story))

    async def _deliver(self, sender: Sender, alert: Alert) -> None:
        name = sender.name
        # One attempt, whether it is the history lookup or the post: a lookup that
        # keeps failing (no network) backs off like a post and counts truthfully.
        try:
            message = await self.render(sender, alert)
        except DeliveryError as exc:
            await self._failed(alert, exc)
            return
        await self._store(self.store.mark_attempt, alert.id)
        attempts = alert.attempts + 1
        if alert.maybe_sent:
            find = getattr(sender, "find_posted", None)
            if find is not None:
                try:
                    found = await find(alert.id)
                except DeliveryError as exc:
                    if not exc.permanent:
                        await self._failed(alert, exc, attempts=attempts, maybe_sent=True)
                        return
                    self._cannot_look(name, alert.id, exc)
                    found = None
                if found is not None:
                    logger.info("alert.reconciled alert=%s destination=%s", alert.id, name)
                    await self._store(self.store.mark_sent, alert.id, self.now(), found)
                    self._report(Outcome.SENT, alert)
                    return
        try:
            receipt = await sender.send(alert, message)
        except DeliveryError as exc:
            await self._failed(alert, exc, attempts=attempts)
            return
        await self._store(self.store.mark_sent, alert.id, self.now(), receipt)
        self._report(Outcome.SENT, alert)
        logger.info("alert.sent alert=%s destination=%s watchlist=%s", alert.id, name,
                    alert.watchlist)

    async def _failed(self, alert: Alert, exc: DeliveryError, attempts: int | None = None,
                maybe_sent: bool = False) -> None:
        attempts = alert.attempts if attempts is None else attempts
        reason = redact.text(str(exc))
        if exc.permanent:
            logger.warning("alert.failed alert=%s destination=%s reason=%s (permanent; "
                           "`news-monitor alerts retry %s` re-queues it)",
                           alert.id, alert.destination, reason, alert.id)
            await self._store(self.store.mark_failed, alert.id, reason)
            self._report(Outcome.FAILED, alert)
            return
        now = self.now()
        if now - alert.created_at > self.policy.give_up_after:
            logger.warning("alert.failed alert=%s destination=%s reason=%s (still failing "
                           "after %s)", alert.id, alert.destination, reason,
                           self.policy.give_up_after)
            await self._store(self.store.mark_failed, alert.id, reason)
            self._report(Outcome.FAILED, alert)
            return
        delay = self.policy.within(self.policy.delay(attempts, exc.retry_after, self.rng),
                                   self._remaining(), exc.retry_after)
        self._report(Outcome.RETRY, alert)
        logger.warning("alert.retry alert=%s destination=%s attempt=%d in=%.1fs reason=%s",
                       alert.id, alert.destination, attempts, delay, reason)
        await self._store(self.store.mark_retry, alert.id, now + timedelta(seconds=delay),
                          reason, maybe_sent or exc.uncertain)

    async def _update(self, sender: Sender, alert: Alert, tries: int = 0) -> None:
        """The story gained sources: edit the Slack message in place (and reply in thread).

        ``tries``: failed tries so far; a transient failure waits like a send does."""
        update = getattr(sender, "update", None)
        if update is None or alert.remote_id is None:
            await self._store(self.store.clear_update, alert.id)
            return
        # Read once for the message and the replies: a story many outlets joined is
        # thousands of rows.
        story = await self._store(self.store.story, alert.story_id)
        try:
            message = self._rendered(f"alert={alert.id}",
                                     lambda r: r.alert(kind_of(sender), alert, story))
            await update(alert, message)
        except DeliveryError as exc:
            if exc.permanent:
                logger.warning("alert.update_failed alert=%s destination=%s reason=%s",
                               alert.id, sender.name, redact.text(str(exc)))
                self._update_backoff.pop(alert.id, None)
                await self._store(self.store.clear_update, alert.id)
            else:
                delay = self.policy.delay(tries + 1, exc.retry_after, self.rng)
                self._update_backoff[alert.id] = (
                    tries + 1, asyncio.get_running_loop().time() + delay)
                logger.warning("alert.update_retry alert=%s destination=%s attempt=%d "
                               "in=%.1fs reason=%s", alert.id, sender.name, tries + 1, delay,
                               redact.text(str(exc)))
            return
        self._update_backoff.pop(alert.id, None)
        reply = getattr(sender, "reply", None)
        if reply is not None and story is not None:
            # Each member not yet announced: a weak join always gets a reply, so a
            # wrong merge is seen in the thread; the others only with thread_updates.
            done = await self._store(self.store.announced, alert.id)
            threaded = getattr(sender, "thread_updates", False)
            due = [source for source in story.sources[done:]
                   if (source.feed, source.link) != (alert.entry.feed, alert.entry.link)
                   and (source.weak or threaded)]
            replies = [(f"{'Possibly the same story' if s.weak else 'Also reported by'}: "
                        f"{s.feed}: {s.title}{f' {s.link}' if s.link else ''}", s.weak)
                       for s in due[:REPLIES_PER_UPDATE]]
            if rest := due[REPLIES_PER_UPDATE:]:
                weak = sum(s.weak for s in rest)
                replies.append((f"And {len(rest)} more reports"
                                + (f", {weak} of them possibly the same story" if weak else "")
                                + f": news-monitor stories --explain lists them ({alert.story_id})",
                                weak > 0))
            for text, always in replies:
                try:
                    await reply(alert, text, always=always)
                except DeliveryError as exc:
                    logger.warning("alert.reply_failed alert=%s destination=%s reason=%s",
                                   alert.id, sender.name, redact.text(str(exc)))
            await self._store(self.store.set_announced, alert.id, len(story.sources))
        await self._store(self.store.clear_update, alert.id)
        logger.info("alert.updated alert=%s destination=%s", alert.id, sender.name)
