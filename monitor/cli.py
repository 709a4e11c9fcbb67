"""The ``news-monitor`` command line.

::

    news-monitor run    [--config F] [--once [--drain 60s]]
                                                     run the service (or one poll of every feed)
    news-monitor replay WATCHLIST [--since 24h]      alert on stored entries of a window
    news-monitor check  [--config F]                 validate config, watchlists, templates
    news-monitor try    WATCHLIST|QUERY [FEED...] [--since 7d] [--json]
                                                     what would alert, without recording or sending
    news-monitor alerts [--failed] [--limit N]       the outbox: alerts with status and attempts
    news-monitor alerts retry (ID... | --all)        re-queue failed alerts
    news-monitor stories [--since 24h]               recent story clusters and their sources
    news-monitor feeds                               each feed's health: status, last success,
                                                     next poll, failures, rate, response time
    news-monitor feeds import FILE.opml [--write]    add an OPML file's feeds to the config
    news-monitor feeds export                        the configured feeds as OPML
    news-monitor db status [--state URL]             the store's schema version, steps pending
    news-monitor db upgrade [--state URL]            apply the pending schema steps
    news-monitor db migrate --from URL --to URL      copy a store into a new one (SQLite to
                                                     PostgreSQL for several instances)
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import shutil
import sys
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from monitor import config as cfg
from monitor import redact
from monitor.errors import ConfigError, MonitorError, StoreError
from monitor.sanitize import ascii_json_safe, escape_control
from monitor.types import Entry, Feed, FeedState, Watchlist

if TYPE_CHECKING:
    from monitor.store import SqlStore

# Heavier modules (asyncio, the service, the store, Jinja2) are imported inside
# the commands that use them: each command loads only its own.

logger = logging.getLogger("monitor")


def _out(text: str = "") -> None:
    """Everything we print passes here: titles, links and errors came from feeds
    and servers, so control characters are shown escaped, never obeyed."""
    sys.stdout.write(escape_control(text) + "\n")


def _err(text: str) -> None:
    sys.stderr.write(escape_control(text) + "\n")


def _json(value: object) -> str:
    """One JSON line whose text holds no raw control character or surrogate."""
    return ascii_json_safe(json.dumps(value, ensure_ascii=False))


def _setup_logging(verbose: bool, fmt: str) -> None:
    from monitor import logs

    level = logging.DEBUG if verbose else logging.INFO
    if os.environ.get("NEWS_MONITOR_LOG_LEVEL"):
        level = getattr(logging, os.environ["NEWS_MONITOR_LOG_LEVEL"].upper(), level)
    logs.setup(level, fmt)


def _duration(text: str) -> timedelta:
    """argparse type: a duration, or one line saying what one looks like."""
    try:
        return cfg.parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _load(args: argparse.Namespace) -> cfg.Config:
    return cfg.load(cfg.find_config(args.config))


def _print_config_error(exc: ConfigError) -> None:
    for e in cfg.split_errors(exc):
        _err(str(e))


# ----------------------------------------------------------------------------- run


def cmd_run(args: argparse.Namespace) -> int:
    """The service; with --once one poll of every feed, exiting 1 when every feed
    failed and 75 (EX_TEMPFAIL) when alerts stay queued, so cron can tell."""
    import asyncio

    from monitor.service import Service, exit_code, settle_memory, summary_line

    config = _load(args)

    async def main() -> int:
        async with Service(config, watch_files=not args.once,
                           long_lived=not args.once) as service:
            settle_memory()
            if args.once:
                left = await service.run_once(drain_timeout=args.drain.total_seconds())
                code = exit_code(service.tally, left)
                logger.log(logging.INFO if code == 0 else logging.WARNING, "%s exit=%d",
                           summary_line(service.tally, left), code)
                return code
            await service.run()
            return 0

    try:
        return asyncio.run(main())
    except KeyboardInterrupt:
        return 130
    except MonitorError as exc:
        _fail(exc)
        return 1


# --------------------------------------------------------------------------- check


def cmd_check(args: argparse.Namespace) -> int:
    from monitor.render import Renderer

    path = cfg.find_config(args.config)
    config = cfg.load(path)
    problems = [str(e) for e in config.watchlist_errors]
    problems += Renderer(config.templates).check()
    for p in problems:
        _err(p)
    for wl in config.watchlists:
        _warn_lowercase_operators(wl)
    if problems:
        return 1
    _out(f"{path}: ok: {_plural(len(config.feeds), 'feed')}, "
         f"{_plural(len(config.watchlists), 'watchlist')}, "
         f"{_plural(len(config.destinations), 'destination')}")
    return 0


def _warn_lowercase_operators(wl: Watchlist) -> None:
    """Operators are upper case; a lowercase ``and`` between terms is a word the
    entry must contain, which is rarely what was meant. A warning, not an error."""
    from monitor.query import lowercase_operators

    if not wl.query:
        return
    for word, offset in lowercase_operators(wl.query):
        where = ":".join(str(x) for x in (wl.path or "<query>", wl.query_line, wl.query_column)
                         if x is not None)
        _err(f"{where}: warning: query: lowercase {word!r} is a word to match, not an "
             f"operator; write {word.upper()} (or quote the phrase)\n"
             f"  {wl.query}\n  {' ' * offset}^")


# ----------------------------------------------------------------------------- try


def _looks_like_path(arg: str) -> bool:
    return (Path(arg).suffix in (".yaml", ".yml")
            or (arg.startswith(("./", "../", "/", "~/")) and " " not in arg))


def _watchlist_from_arg(arg: str) -> Watchlist:
    p = Path(arg).expanduser()
    if _looks_like_path(arg):
        if not p.exists():
            # Taken as a query it would match the words of a file name: say so instead.
            raise MonitorError(f"{arg}: no such watchlist file (to try a query that looks "
                               "like a path, quote its terms: '\"a/b\"')")
        return cfg.load_watchlist(p)
    from monitor import query as q

    try:
        q.validate(q.parse(arg)) if hasattr(q, "validate") else q.parse(arg)
    except ConfigError as exc:
        offset = getattr(exc, "offset", 0)
        raise ConfigError(f"query: {exc.message}\n  {arg}\n  {' ' * offset}^",
                          path="<query>", line=1, column=offset + 1) from None
    return Watchlist(name="query", query=arg, notify=("console",), path="<query>")


def _feed_sources(sources: Sequence[str]) -> list[tuple[str, str, str]]:
    """(as shown, URL, feed name) for each feed URL or file named on the command line:
    a URL is shown, and names its entries, with its credentials masked."""
    return [(redact.url(src), src if "://" in src else "file://" + os.path.abspath(src),
             redact.url(src) if "://" in src else Path(src).stem) for src in sources]


async def _entries_from(feeds: Sequence[tuple[str, str, str]],
                        fetch_timeout: float) -> tuple[list[Entry], int]:
    """The entries of ``feeds``, and how many of them could not be read (each said)."""
    from monitor.fetch import Fetcher
    from monitor.parse import parse_feed
    from monitor.urls import canonical_url

    out: list[Entry] = []
    failed = 0
    async with Fetcher(timeout=fetch_timeout) as fetcher:
        for src, url, name in feeds:
            try:
                result = await fetcher.fetch(Feed(name=name, url=url,
                                                  interval=timedelta(minutes=5)))
                assert result.body is not None
                out.extend(parse_feed(result.body, name, content_type=result.content_type,
                                      canonicalize=canonical_url, now=datetime.now(UTC)))
            except MonitorError as exc:
                failed += 1
                _err(f"{src}: {redact.text(str(exc), secrets=redact.url_secrets(url))}")
    return out, failed


def _warn_source_terms(wl: Watchlist, given: Sequence[str], entries: Sequence[Entry]) -> None:
    """A ``source:`` term names a configured feed; a feed given on the command line is
    named after its file or URL, so the term can only miss there: say so."""
    from monitor.query import parse, terms

    if not wl.query or not given:
        return
    try:
        wanted = [t.source_text for t in terms(parse(wl.query)) if t.field == "source"]
    except MonitorError:
        return
    names = sorted({e.feed for e in entries})
    if wanted and names:
        _err(f"{wl.name}: source: terms ({', '.join(wanted)}) match feed names, and the feeds "
             f"given on the command line are named after their file or URL "
             f"({', '.join(names[:5])}); try with --since to use the configured names")


def cmd_try(args: argparse.Namespace) -> int:
    from monitor.match import Matcher

    wl = _watchlist_from_arg(args.watchlist)
    _warn_lowercase_operators(wl)
    matcher = Matcher.compile([wl])
    if len(matcher) == 0:
        _err(f"{args.watchlist}: this watchlist has no term that could match")
        return 1
    entries: list[tuple[Entry, datetime | None]] = []
    if args.since:
        start = datetime.now(UTC) - args.since
        with _opened_store(args) as store:
            entries += [(se.entry, se.seen_at) for se in store.entries_since(start)]
    unread = 0
    if args.feeds:
        import asyncio

        sources = _feed_sources(args.feeds)
        read, unread = asyncio.run(_entries_from(sources, 20.0))
        entries += [(e, None) for e in read]
        unread = unread if unread == len(sources) else 0
    if not args.since and not args.feeds:
        _err("give one or more feeds (URL or file) to try against, or --since 7d to "
             "backtest against the stored entries")
        return 2
    if wl.feeds is not None and entries and not any(e.feed in wl.feeds for e, _ in entries):
        tried = sorted({e.feed for e, _ in entries})
        _err(f"{wl.name}: its feeds: filter ({', '.join(sorted(wl.feeds))}) excludes every "
             f"entry tried (from {', '.join(tried)}); feeds given on the command line are "
             "named after their file or URL, so try with --since, or without the filter")
    _warn_source_terms(wl, args.feeds, [e for e, _ in entries])
    hits = 0
    per_day: Counter[str] = Counter()
    for entry, seen in entries:
        for m in matcher.match(entry):
            hits += 1
            when = seen or entry.published
            if when is not None:
                per_day[when.strftime("%Y-%m-%d")] += 1
            if args.json:
                _out(_json({"watchlist": m.watchlist, "title": entry.title,
                            "link": entry.link, "matched": list(m.terms),
                            "feed": entry.feed,
                            "published": entry.published.isoformat()
                            if entry.published else None}))
            else:
                _out(f"* {entry.title}\n  {entry.feed} | {entry.link}\n"
                     f"  matched: {', '.join(m.terms)}")
    if not args.json:
        _out(f"{hits} of {_plural(len(entries), 'entry', 'entries')} would alert")
        if args.since and per_day:
            _out("per day:")
            for day in sorted(per_day):
                _out(f"  {day}  {per_day[day]}")
    if unread:  # nothing was tried: "0 would alert" must not read as a pass
        _err(f"none of the {_plural(unread, 'feed', 'feeds')} given could be read")
        return 1
    return 0


# -------------------------------------------------------------------------- replay


def cmd_replay(args: argparse.Namespace) -> int:
    """Alert deliberately on stored entries of a window, for a new or changed watchlist.

    A live watchlist applies to entries found from its load on; this is how a team
    catches up on purpose. Grouped and deduplicated as at ingest: one alert per
    story, none for a story this watchlist already alerted on.
    """
    from monitor.match import Matcher
    from monitor.service import alerts_for

    config = _load(args)
    wl = _configured_watchlist(config, args.watchlist)
    now = datetime.now(UTC)
    since = now - args.since
    with _opened_store(args) as store:
        stored = store.entries_since(since)
        matcher = Matcher.compile([wl])
        matches = [(m, se.story_id) for se in stored for m in matcher.match(se.entry)]
        queued = store.queue(alerts_for(matches, {wl.name: wl}, now))
    stories = {a.story_id for a in queued}
    _out(f"{wl.name}: {_plural(len(matches), 'stored entry', 'stored entries')} of "
         f"{_plural(len(stored), 'entry', 'entries')} since {since:%Y-%m-%d %H:%M} UTC match; "
         f"queued {_plural(len(queued), 'alert')} for {_plural(len(stories), 'story', 'stories')}"
         "; a running service sends them within seconds, or run `news-monitor run --once`")
    return 0


def _configured_watchlist(config: cfg.Config, ref: str) -> Watchlist:
    """A watchlist of the config, by name or by its file's path."""
    for wl in config.watchlists:
        if ref == wl.name or (wl.path and Path(ref).resolve() == Path(wl.path).resolve()):
            return wl
    for err in config.watchlist_errors:
        if err.path and Path(ref).resolve() == Path(err.path).resolve():
            raise err
    known = ", ".join(repr(w.name) for w in config.watchlists) or "none"
    raise MonitorError(f"no watchlist named {ref!r} in {config.path} (known: {known})")


def _plural(n: int, one: str, many: str | None = None) -> str:
    return f"{n} {one if n == 1 else (many or one + 's')}"


# ------------------------------------------------------------ alerts, stories, feeds


@contextmanager
def _opened_store(args: argparse.Namespace) -> Iterator[SqlStore]:
    """The configured store, closed afterwards. Raises ConfigError for a bad config."""
    from monitor.store import open_store

    store = open_store(_load(args).state)
    try:
        yield store
    finally:
        store.close()


def cmd_alerts(args: argparse.Namespace) -> int:
    from monitor.types import AlertStatus

    with _opened_store(args) as store:
        if args.action == "retry":
            if not args.all and not args.ids:
                _err("alerts retry: give alert ids or --all")
                return 2
            found = {i: store.alert(i) for i in args.ids}
            unknown = [i for i, a in found.items() if a is None]
            if unknown:
                _err(f"alerts retry: no alert has the id {', '.join(map(repr, unknown))} "
                     "(`news-monitor alerts --failed` lists the failed ones)")
                return 1
            not_failed = [f"{i} is {a.status.value}" for i, a in found.items()
                          if a is not None and a.status is not AlertStatus.FAILED]
            if not_failed:  # only a failed alert goes back in the queue
                _err(f"alerts retry: {', '.join(not_failed)}, not failed: nothing to retry")
                return 1
            n = store.requeue(None if args.all else args.ids, datetime.now(UTC))
            _out(f"re-queued {_plural(n, 'alert')}; a running service sends "
                 f"{'it' if n == 1 else 'them'} within seconds, "
                 "or run `news-monitor run --once`")
            return 0
        status = AlertStatus.FAILED if args.failed else None
        alerts = store.list_alerts(status, limit=args.limit)
        if args.json:
            for a in alerts:
                _out(_json({"id": a.id, "status": a.status.value, "watchlist": a.watchlist,
                            "destination": a.destination, "attempts": a.attempts,
                            "title": a.entry.title,
                            "error": a.last_error and redact.text(a.last_error),
                            "created_at": a.created_at.isoformat()}))
            return 0
        _out(f"{'ID':<20} {'STATUS':<7} {'TRIES':>5}  {'DESTINATION':<14} {'WATCHLIST':<22} TITLE")
        for a in alerts:
            _out(f"{a.id:<20} {a.status.value:<7} {a.attempts:>5}  {a.destination[:14]:<14} "
                 f"{a.watchlist[:22]:<22} {a.entry.title[:60]}")
            if a.last_error:  # stored before errors were redacted, maybe
                _out(f"{'':<36}error: {redact.text(a.last_error)}")
        return 0


def cmd_stories_split(args: argparse.Namespace) -> int:
    """Undo a merge: the entry gets a story of its own (its own id, as if it had
    opened one) and the alerts it would have caused are queued, deduplicated as at
    ingest. A running service picks the split up before its next poll's grouping."""
    from monitor.dedupe import story_id_for
    from monitor.match import Matcher
    from monitor.service import alerts_for

    config = _load(args)
    with _opened_store(args) as store:
        se = store.find_entry(args.entry)
        if se is None:
            _err(f"no stored entry has the link, GUID or key {args.entry!r}")
            return 1
        story = story_id_for(se.entry)
        if story == se.story_id:
            story = story_id_for(replace(se.entry, canonical_url=""))
        if len(store.members(se.story_id)) < 2:
            _err(f"{se.entry.title!r} is already the only member of its story")
            return 1
        watchlists = {w.name: w for w in config.watchlists}
        matches = [(m, story) for m in Matcher.compile(config.watchlists).match(se.entry)]
        alerts = alerts_for(matches, watchlists, datetime.now(UTC))
        queued = store.split(replace(se, story_id=story), story, alerts)
        _out(f"split {se.entry.feed}: {se.entry.title} into story {story}; "
             f"{_plural(len(queued), 'alert')} queued")
        return 0


def cmd_stories(args: argparse.Namespace) -> int:
    with _opened_store(args) as store:
        since = datetime.now(UTC) - args.since
        stories = store.stories_since(since)
        for s in stories:
            feeds = sorted({src.feed for src in s.sources})
            if args.json:
                _out(_json({"id": s.id, "title": s.title,
                            "first_seen": s.first_seen.isoformat(),
                            "sources": [{"feed": x.feed, "title": x.title, "link": x.link}
                                        for x in s.sources]}))
                continue
            _out(f"{s.first_seen:%Y-%m-%d %H:%M}  [{len(s.sources)} from "
                 f"{_plural(len(feeds), 'source')}] {s.title}")
            if args.explain:
                for m in store.members(s.id):
                    j = m.join
                    why = ("opened the story" if j is None else
                           f"{j.how}: score {j.score:.2f} >= bar {j.bar:.2f}"
                           + (f", shared: {' '.join(j.evidence)}" if j.evidence else "")
                           + (" (weak: possibly the same story)" if j.weak else ""))
                    _out(f"    {m.entry.feed}: {m.entry.title}  {m.entry.link}")
                    _out(f"        {why}")
            elif len(feeds) > 1 or args.all_sources:
                for src in s.sources:
                    _out(f"    {src.feed}: {src.title}  {src.link}")
        if not args.json:
            _out(f"{_plural(len(stories), 'story', 'stories')} since {since:%Y-%m-%d %H:%M} UTC")
        return 0


def _ago(now: datetime, when: datetime | None) -> str:
    from monitor.render import format_duration

    return "never" if when is None else f"{format_duration(now - when)} ago"


def feed_rows(feeds: Sequence[Feed], states: dict[str, FeedState],
              now: datetime) -> list[tuple[str, ...]]:
    """The health table's rows, one per configured feed (pure)."""
    from monitor.render import format_duration

    rows: list[tuple[str, ...]] = [
        ("FEED", "STATUS", "HTTP", "LAST OK", "NEXT", "PER DAY", "RESPONSE", "POLLED BY",
         "ERROR")]
    for feed in feeds:
        st = states.get(feed.name) or FeedState(name=feed.name)
        if st.gone_url == feed.url:
            status = "gone (410)"
        elif st.failures:
            since = st.failing_since or st.last_polled_at or now
            status = f"failing {format_duration(now - since)} x{st.failures}"
        elif st.last_polled_at is None:
            status = "new"
        else:
            status = "ok"
        if st.gone_url == feed.url:
            nxt = "never"
        elif st.next_poll_at is None or st.next_poll_at <= now:
            nxt = "due"
        else:
            nxt = f"in {format_duration(st.next_poll_at - now)}"
        rows.append((
            feed.name, status, str(st.status or "-"), _ago(now, st.last_success_at), nxt,
            f"{st.per_day:.1f}" if st.per_day is not None else "-",
            f"{st.response_ms:.0f}ms" if st.response_ms is not None else "-",
            st.polled_by or "-",
            redact.text(st.last_error or "")[:60] if st.failures else "",
        ))
    return rows


def _table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                     for r in rows)


def cmd_feeds(args: argparse.Namespace) -> int:
    config = _load(args)
    with _opened_store(args) as store:
        states = store.feed_states()
    _out(_table(feed_rows(config.feeds, states, datetime.now(UTC))))
    return 0


def cmd_feeds_export(args: argparse.Namespace) -> int:
    from monitor.opml import to_opml

    _out(to_opml(_load(args).feeds, title="news-monitor feeds", secrets=args.with_secrets))
    return 0


def cmd_feeds_import(args: argparse.Namespace) -> int:
    from monitor.opml import add_feeds, read_opml

    config = _load(args)
    try:
        outlines = read_opml(Path(args.file).read_bytes())
    except OSError as exc:
        raise ConfigError(f"cannot read {args.file}: {exc.strerror or exc}") from exc
    except ConfigError as exc:
        raise ConfigError(f"{args.file}: {exc}") from None
    found = outlines.feeds
    for why in outlines.skipped:
        _out(f"  skipped {why}")
    text = config.path.read_text(encoding="utf-8")
    updated, added = add_feeds(text, found, [(f.name, f.url) for f in config.feeds])
    for name, url in added:
        _out(f"+ {name}  {redact.url(url)}")
    _out(f"{len(added)} new feeds, {len(found) - len(added)} already configured")
    if added and args.write:
        _replace_checked(config.path, updated)
        _out(f"written to {config.path}")
    elif added:
        _out("(dry run: --write adds them to the config)")
    return 0


def _replace_checked(path: Path, text: str) -> None:
    """Replace the config at ``path`` with ``text`` only if ``text`` loads, in one
    rename: a failed import leaves the user's file as it was, never half written
    or unable to start the service."""
    tmp = path.with_name(f".{path.name}.import")
    try:
        tmp.write_text(text, encoding="utf-8")
        shutil.copymode(path, tmp)
        try:
            cfg.load(tmp)
        except ConfigError as exc:
            raise ConfigError(f"{path} left unchanged: with the feeds added it would not "
                              f"load: {exc}") from None
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


# ------------------------------------------------------------------------------ db


def _state_url(args: argparse.Namespace) -> str:
    return str(args.state) if args.state else _load(args).state


def _existing_store(url: str) -> SqlStore:
    """The store at ``url`` as it is, for a command that only reads it: a mistyped
    SQLite path is an error, not a new empty database (whose "run db upgrade"
    advice would then make it a real one)."""
    from monitor.store import open_store

    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
        if not path.is_file():
            raise StoreError(f"no such store: {path} (nothing was created)")
    return open_store(url, upgrade=False)


def cmd_db_status(args: argparse.Namespace) -> int:
    from monitor.store.sql import SCHEMA_VERSION

    url = _state_url(args)
    store = _existing_store(url)
    try:
        version = store.schema_version()
        leases = store.leases() if version >= 5 else {}
    finally:
        store.close()
    _out(f"state: {redact.url(url)}")
    pending = list(range(max(version, 1) + 1, SCHEMA_VERSION + 1)) if version else []
    if version == 0:
        _out(f"schema: none (an empty database; `db upgrade` or the service creates "
             f"schema {SCHEMA_VERSION})")
    elif version > SCHEMA_VERSION:
        _out(f"schema: {version}, newer than this news-monitor ({SCHEMA_VERSION})")
    elif pending:
        _out(f"schema: {version}; pending steps: {', '.join(map(str, pending))} "
             f"(`db upgrade`, or the service at start, applies them)")
    else:
        _out(f"schema: {version} (up to date)")
    for name, (owner, until) in sorted(leases.items()):
        _out(f"lease: {name} held by {owner} until {until:%Y-%m-%d %H:%M:%S} UTC")
    return 0


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from monitor.store import open_store

    url = _state_url(args)
    store = open_store(url, upgrade=False)
    try:
        before = store.schema_version()
        done = store.upgrade()
    finally:
        store.close()
    if done:
        _out(f"{redact.url(url)}: schema {before} -> {done[-1]} "
             f"(steps {', '.join(map(str, done))})")
    else:
        _out(f"{redact.url(url)}: schema {before}, up to date")
    return 0


def cmd_db_migrate(args: argparse.Namespace) -> int:
    from monitor.store import open_store

    src = _existing_store(args.source)
    try:
        dst = open_store(args.dest)
        try:
            copied = dst.copy_from(src)
        finally:
            dst.close()
    finally:
        src.close()
    _out(f"copied {redact.url(args.source)} to {redact.url(args.dest)}: "
         + ", ".join(f"{table} {n}" for table, n in copied.items()))
    _out("point `state:` in monitor.yaml at the new store before starting the service")
    return 0


# -------------------------------------------------------------------------- parser


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line (``news-monitor try: argument --since: expected a
    duration like ...``), pointing at --help rather than printing all of it."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("news-monitor")
    except PackageNotFoundError:
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="news-monitor", description="Watch news feeds; alert "
                "once per matching story to Slack, email or the console.")
    p.add_argument("--version", action="version", version=f"%(prog)s {_version()}",
                   help="print the version and exit")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    p.add_argument("--log-format", choices=["text", "json"], default="text",
                   help="text: `event key=value` lines (under systemd without timestamps, "
                   "with journald priorities); json: one object per line, for log shippers")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def with_config(sp: argparse.ArgumentParser) -> argparse.ArgumentParser:
        sp.add_argument("--config", "-c", help="monitor.yaml (default: $NEWS_MONITOR_CONFIG, "
                        "else ./monitor.yaml)")
        return sp

    run = with_config(sub.add_parser("run", help="run the service"))
    run.add_argument("--once", action="store_true",
                     help="poll every feed once, deliver the alerts, exit")
    run.add_argument("--drain", type=_duration, default=timedelta(seconds=60),
                     metavar="DURATION",
                     help="with --once: how long deliveries may take, retries included "
                     "(default 60s)")
    run.set_defaults(func=cmd_run)

    rp = with_config(sub.add_parser(
        "replay", help="alert on stored entries of a window (grouped and deduplicated "
        "as usual), e.g. after adding or changing a watchlist"))
    rp.add_argument("watchlist", metavar="WATCHLIST", help="the watchlist's name or file")
    rp.add_argument("--since", type=_duration, default=timedelta(hours=24), metavar="DURATION",
                    help="how far back to look (default 24h)")
    rp.set_defaults(func=cmd_replay)

    check = with_config(sub.add_parser("check", help="validate config, watchlists, templates"))
    check.set_defaults(func=cmd_check)

    t = with_config(sub.add_parser("try", help="show which entries a watchlist or query "
                                   "would alert on, recording and sending nothing"))
    t.add_argument("watchlist", help="a watchlist .yaml file, or a query string")
    t.add_argument("feeds", nargs="*", help="feed URLs or files")
    t.add_argument("--since", type=_duration, metavar="DURATION",
                   help="backtest against stored entries of this period, e.g. 7d")
    t.add_argument("--json", action="store_true", help="one JSON object per matching entry")
    t.set_defaults(func=cmd_try)

    al = with_config(sub.add_parser("alerts", help="list alerts; `alerts retry` re-queues"))
    al.add_argument("action", nargs="?", choices=["list", "retry"], default="list",
                    help="list (the default) or retry")
    al.add_argument("ids", nargs="*", help="alert ids to retry")
    al.add_argument("--all", action="store_true", help="retry every failed alert")
    al.add_argument("--failed", action="store_true", help="only failed (dead-letter) alerts")
    al.add_argument("--limit", type=int, default=50, help="list at most N alerts (default 50)")
    al.add_argument("--json", action="store_true", help="one JSON object per alert")
    al.set_defaults(func=cmd_alerts)

    st = with_config(sub.add_parser("stories", help="recent story clusters and their sources"))
    st.add_argument("--since", type=_duration, default=timedelta(hours=24), metavar="DURATION",
                    help="stories seen in this period (default 24h)")
    st.add_argument("--all-sources", action="store_true", help="list sources of every story")
    st.add_argument("--json", action="store_true", help="one JSON object per story")
    st.add_argument("--explain", action="store_true",
                    help="per member: the rule, score and bar it passed, and the shared words")
    st.set_defaults(func=cmd_stories)
    st_sub = st.add_subparsers(dest="stories_command")
    sp = with_config(st_sub.add_parser(
        "split", help="make an entry its own story and queue the alerts it would have caused"))
    sp.add_argument("entry", metavar="LINK_OR_ENTRY", help="the entry's link, GUID or key")
    sp.set_defaults(func=cmd_stories_split)

    fd = with_config(sub.add_parser("feeds", help="each feed's health"))
    fd.set_defaults(func=cmd_feeds)
    fd_sub = fd.add_subparsers(dest="feeds_command")
    fi = with_config(fd_sub.add_parser("import", help="add an OPML file's feeds to the config"))
    fi.add_argument("file", metavar="FILE.opml", help="an OPML file (exported by a feed reader)")
    fi.add_argument("--write", action="store_true", help="write them into the config file")
    fi.set_defaults(func=cmd_feeds_import)
    fe = with_config(fd_sub.add_parser("export", help="the configured feeds as OPML"))
    fe.add_argument("--with-secrets", action="store_true",
                    help="the URLs as configured, credentials and tokens included "
                         "(masked without it)")
    fe.set_defaults(func=cmd_feeds_export)

    db = sub.add_parser("db", help="the state store: schema status, upgrade, migrate")
    db_sub = db.add_subparsers(dest="db_command", required=True, parser_class=_Parser)
    for name, func, text in (("status", cmd_db_status, "the schema version and steps pending"),
                             ("upgrade", cmd_db_upgrade, "apply the pending schema steps")):
        d = with_config(db_sub.add_parser(name, help=text))
        d.add_argument("--state", metavar="URL", help="the store (default: the config's state)")
        d.set_defaults(func=func)
    dm = db_sub.add_parser("migrate", help="copy a store into a new, empty one")
    dm.add_argument("--from", dest="source", required=True, metavar="URL",
                    help="the store to copy, e.g. sqlite:///state/monitor.db")
    dm.add_argument("--to", dest="dest", required=True, metavar="URL",
                    help="the new store, e.g. postgresql://monitor@db/monitor")
    dm.set_defaults(func=cmd_db_migrate)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """The ``news-monitor`` command; returns its exit status. Meant to end the
    process: see the ``finally``."""
    try:
        return _command(argv)
    finally:
        # The interpreter's collections at exit walk every object the imports
        # made (pydantic's schemas, Jinja2, aiohttp) to free what dies with the
        # process anyway; frozen objects are left out of them.
        gc.freeze()


def _fail(exc: MonitorError) -> None:
    """The error that ends a command, with the store it happened in (StoreError.where)."""
    where = getattr(exc, "where", None)
    _err(f"news-monitor: {where}: {exc}" if where and where not in str(exc)
         else f"news-monitor: {exc}")


def _command(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    _setup_logging(args.verbose, args.log_format)
    try:
        return int(args.func(args))
    except ConfigError as exc:
        _print_config_error(exc)
        return 1
    except MonitorError as exc:
        _fail(exc)
        return 1
    except BrokenPipeError:  # the reader went away (`| head`): not our error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
