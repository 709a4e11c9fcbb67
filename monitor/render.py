"""Jinja2 rendering: an alert or a digest -> a message for Slack, email or the console.

Pure: a :class:`Renderer` reads templates from the folder it is given (users
edit them) and turns values into :class:`~monitor.types.Rendered`; it never
touches the network, the clock or anything else on disk.

Templates, one family per destination kind::

    kind      alert                         digest
    slack     alert.slack.j2 (mrkdwn)       digest.slack.j2 (mrkdwn)
    email     alert.txt.j2 + alert.html.j2  digest.txt.j2 + digest.html.j2
    console   alert.txt.j2                  digest.txt.j2

Feed text is untrusted. In Slack, ``&``, ``<`` and ``>`` are control
characters: an unescaped title ``<!channel>`` pings the whole channel and
``<https://evil|click>`` disguises a link. So the Slack environment escapes the
output of *every* ``{{ expression }}`` (Jinja's ``finalize`` hook), the way
autoescape protects HTML, unless the value is already :class:`Mrkdwn` (what
our own filters return). A user editing a Slack template therefore cannot
forget to escape. HTML templates (``*.html.j2``) use Jinja's autoescape; text
templates are plain. Only the layout around the template text (Block Kit
header and context, subjects) is built here, because Slack's limits (header
150 characters, section 3000, 50 blocks) must hold whatever a template says.
"""

from __future__ import annotations

import dataclasses
import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from markupsafe import Markup, escape

from monitor.errors import ConfigError
from monitor.text import normalize, tokenize
from monitor.types import Alert, Entry, Rendered, Source, Story

# Jinja2 is imported by the first Renderer: the helpers here (escaping, durations)
# serve processes that render nothing.
if TYPE_CHECKING:
    import jinja2

KINDS = ("slack", "email", "console")

#: every template a complete template folder has, in the order check() reports them
TEMPLATE_NAMES = (
    "alert.slack.j2",
    "alert.txt.j2",
    "alert.html.j2",
    "digest.slack.j2",
    "digest.txt.j2",
    "digest.html.j2",
)

# Slack's limits (docs.slack.dev/reference/block-kit/blocks): header text 150,
# section text 3000, 50 blocks per message.
HEADER_LIMIT = 150
SECTION_LIMIT = 3000
MAX_BLOCKS = 50
FALLBACK_LIMIT = 3000  # message `text` may be 40,000; a notification needs far less
SNIPPET_LIMIT = 300
ALSO_REPORTED_NAMES = 3  # "A, B, C, +N"

# --------------------------------------------------------------------------- escaping


class Mrkdwn(str):
    """Text that is already safe Slack mrkdwn; the Slack environment leaves it alone."""

    __slots__ = ()


def mrkdwn_escape(text: str) -> str:
    """Escape Slack's three control characters, ``&`` first; nothing else.

    Slack asks for exactly this (api.slack.com/reference/surfaces/formatting#escaping)
    and shows any other HTML entity literally, so this is not ``html.escape``.
    """
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _mrkdwn(value: object) -> Mrkdwn:
    if isinstance(value, Mrkdwn):
        return value
    return Mrkdwn(mrkdwn_escape("" if value is None else str(value)))


def _finalize_mrkdwn(value: object) -> object:
    """Jinja ``finalize`` for Slack templates: escape every ``{{ }}`` output."""
    return _mrkdwn(value)


def _link_url(url: str) -> str:
    """A URL fit to sit inside ``<url|label>``: escaped, with ``|`` and spaces encoded."""
    return mrkdwn_escape(url).replace("|", "%7C").replace(" ", "%20")


def _safe_link(url: str) -> str:
    """Only http(s) links are shown: a feed could carry ``javascript:`` or ``slack://``."""
    try:
        scheme = urlsplit(url.strip()).scheme.lower()
    except ValueError:
        return ""
    return url.strip() if scheme in ("http", "https") else ""


# --------------------------------------------------------------------------- text helpers


def format_duration(d: timedelta) -> str:
    """A duration as people write it: ``45s``, ``2m``, ``3h``, ``1h30m``, ``2d``."""
    secs = int(max(d.total_seconds(), 0))
    if secs < 60:
        return f"{secs}s"
    days, rest = divmod(secs, 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    if days:
        return f"{days}d{hours}h" if hours and days < 3 else f"{days}d"
    if hours:
        return f"{hours}h{minutes}m" if minutes else f"{hours}h"
    return f"{minutes}m"


def ops_notice(kind: str, text: str, url: str) -> Rendered:
    """A notice about the monitor itself (a feed dead, gone or back) for a destination
    of ``kind``. No template: it is not a story. What it quotes (a feed's name, a
    server's reason phrase) is escaped for Slack as any feed text is."""
    line = one_line(text)
    body = f"{line}\n{url}"
    return Rendered(subject=f"[news-monitor] {line}",
                    text=mrkdwn_escape(body) if kind == "slack" else body)


def one_line(text: str) -> str:
    """Collapse all whitespace (including newlines) to single spaces."""
    return " ".join(text.split())


def snippet(text: str, limit: int = SNIPPET_LIMIT) -> str:
    """``text`` on one line, cut to about ``limit`` characters at a word boundary."""
    text = one_line(text)
    if len(text) <= limit:
        return text
    cut = text[:limit]
    space = cut.rfind(" ")
    if space > limit * 0.6:  # a very long "word" (a URL) is cut mid-word instead
        cut = cut[:space]
    return cut.rstrip(" ,;:-–—") + "…"


def _fit(text: str, limit: int, escape_fn: Callable[[str], str] = mrkdwn_escape) -> str:
    """Escape ``text`` and shorten it (with "…") until the *escaped* form fits ``limit``.

    Shortening the raw text before escaping never cuts an ``&amp;`` in half.
    """
    escaped: str = escape_fn(text)
    if len(escaped) <= limit:
        return escaped

    def shortened(n: int) -> str:
        return str(escape_fn(text[:n].rstrip())) + "…"

    lo, hi = 0, min(len(text), limit)  # the longest raw prefix that fits, by bisection
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if len(shortened(mid)) <= limit:
            lo = mid
        else:
            hi = mid - 1
    return shortened(lo)


def _truncate_mrkdwn(text: str, limit: int) -> str:
    """Cut rendered mrkdwn to ``limit`` without leaving half an entity or ``<link|...>``."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    amp = cut.rfind("&")
    if amp != -1 and ";" not in cut[amp:]:
        cut = cut[:amp]
    lt = cut.rfind("<")
    if lt != -1 and ">" not in cut[lt:]:
        cut = cut[:lt]
    return cut.rstrip() + "…"


def _when(moment: datetime | None) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC") if moment else ""


# --------------------------------------------------------------------------- highlighting


def _is_wide(char: str) -> bool:
    """CJK, kana, hangul: written without spaces, so no word boundaries around them."""
    return unicodedata.east_asian_width(char) in ("W", "F")


def _term_regex(terms: Iterable[str]) -> re.Pattern[str] | None:
    """One regex for all terms, over text folded like the matcher folds it.

    Terms are tokenised exactly as the matcher does (monitor.text), so
    "North-Korean" finds "north korean" and "zelenskyy" finds "Zelenskyý".
    A trailing ``*`` is a prefix wildcard. Longest terms first, so a phrase wins
    over its own words.
    """
    parts: list[tuple[int, str]] = []
    for term in set(terms):
        tokens = tokenize(term)
        if not tokens:
            continue
        pattern = ""
        for i, token in enumerate(tokens):
            if i:
                wide = _is_wide(tokens[i - 1][-1]) or _is_wide(token[0])
                pattern += r"[\W_]*" if wide else r"[\W_]+"
            pattern += re.escape(token)
        if term.rstrip().endswith("*"):
            pattern += r"[^\W_]*"
        before = "" if _is_wide(tokens[0][0]) else r"(?<![^\W_])"
        after = "" if _is_wide(tokens[-1][-1]) else r"(?![^\W_])"
        parts.append((len(normalize(term)), before + pattern + after))
    if not parts:
        return None
    parts.sort(key=lambda p: -p[0])
    return re.compile("|".join(f"(?:{p})" for _, p in parts))


def highlight_spans(text: str, terms: Iterable[str]) -> list[tuple[int, int]]:
    """Where in ``text`` the terms occur: sorted, non-overlapping ``(start, end)``.

    Matching runs on a folded copy of the text with a map back to the original
    characters, so highlighting and escaping can work on the original.
    """
    regex = _term_regex(terms)
    if regex is None or not text:
        return []
    folded: list[str] = []
    origin: list[int] = []
    for i, char in enumerate(text):
        for f in normalize(char):
            folded.append(f)
            origin.append(i)
    spans: list[tuple[int, int]] = []
    for m in regex.finditer("".join(folded)):
        if m.end() == m.start():
            continue
        start, end = origin[m.start()], origin[m.end() - 1] + 1
        # take trailing combining marks (which fold to nothing) along
        while end < len(text) and not normalize(text[end]):
            end += 1
        if spans and start < spans[-1][1]:
            continue
        spans.append((start, end))
    return spans


def _highlight(
    text: str, terms: Iterable[str], esc: Callable[[str], str], open_: str, close: str
) -> str:
    # str() before concatenating: "<mark>" + Markup(...) would escape the tag
    out: list[str] = []
    pos = 0
    for start, end in highlight_spans(text, terms):
        out.append(str(esc(text[pos:start])))
        out.append(open_ + str(esc(text[start:end])) + close)
        pos = end
    out.append(str(esc(text[pos:])))
    return "".join(out)


def highlight_mrkdwn(text: str, terms: Iterable[str]) -> Mrkdwn:
    """Escape ``text`` for Slack and make the matched terms ``*bold*``."""
    return Mrkdwn(_highlight(text, terms, mrkdwn_escape, "*", "*"))


def highlight_html(text: str, terms: Iterable[str]) -> Markup:
    """Escape ``text`` for HTML and wrap the matched terms in ``<mark>``."""
    return Markup(_highlight(text, terms, escape, "<mark>", "</mark>"))


def _terms_from(context: jinja2.runtime.Context, terms: Iterable[str] | None) -> list[str]:
    if terms is not None:
        return list(terms)
    found = context.get("terms")
    return list(found) if isinstance(found, (list, tuple)) else []


def _slack_highlight(
    context: jinja2.runtime.Context, value: object, terms: Iterable[str] | None = None
) -> Mrkdwn:
    if isinstance(value, Mrkdwn):
        return value  # already escaped: positions in it no longer match the text
    return highlight_mrkdwn("" if value is None else str(value), _terms_from(context, terms))


def _plain_highlight(
    context: jinja2.runtime.Context, value: object, terms: Iterable[str] | None = None
) -> str | Markup:
    text = "" if value is None else str(value)
    if context.eval_ctx.autoescape:
        if isinstance(value, Markup):
            return value
        return highlight_html(text, _terms_from(context, terms))
    return text


def _slack_link_to(label: object, url: object) -> Mrkdwn:
    """``{{ "Read more" | link_to(link) }}`` -> ``<url|Read more>``; bare label without a URL."""
    text = _mrkdwn(label)
    href = _safe_link(str(url or ""))
    if not href:
        return text
    return Mrkdwn(f"<{_link_url(href)}|{text}>")


# --------------------------------------------------------------------------- context


@dataclass(frozen=True, slots=True)
class _Item:
    """One story as templates see it (alerts and digest items alike)."""

    title: str
    link: str
    source: str
    published: str
    found: str
    snippet: str
    summary: str
    terms: list[str]
    watchlist: str
    also_reported_by: str = ""
    others: tuple[Source, ...] = ()  # the story's other members, each with its own headline


@dataclass(frozen=True, slots=True)
class _Group:
    """One watchlist's part of a digest (an object, not a dict: ``group.items`` must work)."""

    watchlist: str
    items: list[_Item]
    count: int

    @property
    def unlisted(self) -> int:
        """Stories counted but not listed (a flood's summary lists ``max_items``)."""
        return self.count - len(self.items)


def in_turn_by_feed(alerts: Sequence[Alert], n: int) -> list[Alert]:
    """``n`` of ``alerts`` taken from their feeds in turn (each feed's first, then each
    one's second, ...), in their own order: a summary that lists only some of a
    flood lists every feed's news, not the first ``n`` of the feed that floods."""
    if len(alerts) <= n:
        return list(alerts)
    queues: dict[str, list[int]] = {}
    for i, a in enumerate(alerts):
        queues.setdefault(a.entry.feed, []).append(i)
    taken: list[int] = []
    depth = 0
    while len(taken) < n:
        taken += [q[depth] for q in queues.values() if depth < len(q)][:n - len(taken)]
        depth += 1
    return [alerts[i] for i in sorted(taken)]


def _item(alert: Alert, story: Story | None = None) -> _Item:
    entry: Entry = alert.entry
    return _Item(
        title=one_line(entry.title) or one_line(entry.link) or "(untitled)",
        link=_safe_link(entry.link),
        source=entry.feed,
        published=_when(entry.published),
        found=_when(alert.created_at),
        snippet=snippet(entry.summary),
        summary=entry.summary,
        terms=list(alert.terms),
        watchlist=alert.watchlist,
        also_reported_by=also_reported_by(entry.feed, story),
        # Their links as the item's own: a feed that joins a story must not put a
        # javascript: or data: link in the team's digest.
        others=tuple(x if (safe := _safe_link(x.link)) == x.link else replace(x, link=safe)
                     for x in (story.sources if story else ())
                     if (x.feed, x.link) != (entry.feed, entry.link)),
    )


def also_reported_by(own_feed: str, story: Story | None, limit: int = ALSO_REPORTED_NAMES) -> str:
    """ "A, B, +N" for the other outlets carrying the story; "" when there are none."""
    if story is None or len(story.sources) < 2:
        return ""
    names = list(dict.fromkeys(s.feed for s in story.sources if s.feed != own_feed))
    if not names:
        return ""
    shown = names[:limit]
    rest = len(names) - len(shown)
    return ", ".join(shown) + (f", +{rest}" if rest else "")


def _alert_context(alert: Alert, story: Story | None) -> dict[str, Any]:
    item = _item(alert, story)
    # The item's fields as they are (templates read a source's fields by name, as
    # attributes or keys alike): dataclasses.asdict would copy every member of a
    # story hundreds of outlets joined, to show ten.
    context: dict[str, Any] = {f.name: getattr(item, f.name) for f in dataclasses.fields(item)}
    context.update(
        destination=alert.destination,
        alert_id=alert.id,
        other_sources=list(item.others),
    )
    return context


# --------------------------------------------------------------------------- renderer


class Renderer:
    """Renders alerts and digests with the templates in ``template_dir``."""

    def __init__(self, template_dir: str | Path) -> None:
        import jinja2

        self.template_dir = Path(template_dir)
        loader = jinja2.FileSystemLoader(str(self.template_dir))
        common: dict[str, Any] = {
            "loader": loader,
            "undefined": jinja2.StrictUndefined,
            "trim_blocks": True,
            "lstrip_blocks": True,
            "auto_reload": False,  # a template changes only on reload, once validated
        }
        self._env = jinja2.Environment(
            autoescape=jinja2.select_autoescape(
                enabled_extensions=("html.j2",), default_for_string=False, default=False
            ),
            **common,
        )
        self._env.filters["highlight"] = jinja2.pass_context(_plain_highlight)
        self._slack = jinja2.Environment(autoescape=False, finalize=_finalize_mrkdwn, **common)
        self._slack.filters.update(
            mrkdwn=_mrkdwn, highlight=jinja2.pass_context(_slack_highlight),
            link_to=_slack_link_to
        )

    # -- public API

    def check(self) -> list[str]:
        """Problems with the templates as ``path:line: message``; empty when all is well.

        Loads every template, then renders each kind once with sample data, so
        an unknown variable (StrictUndefined) is caught here rather than when
        the first real alert goes out.
        """
        problems: list[str] = []
        for name in TEMPLATE_NAMES:
            try:
                self._template(name)
            except ConfigError as exc:
                problems.append(str(exc))
        if problems:
            return problems
        alert, story = _sample()
        for kind in KINDS:
            for with_story in (story, None):
                try:
                    self.alert(kind, alert, with_story)
                except ConfigError as exc:
                    if str(exc) not in problems:
                        problems.append(str(exc))
            try:
                self.digest(kind, "Sample digest", [("sample", [alert])])
            except ConfigError as exc:
                if str(exc) not in problems:
                    problems.append(str(exc))
        return problems

    def alert(self, kind: str, alert: Alert, story: Story | None = None) -> Rendered:
        """One alert for a destination of ``kind`` ("slack", "email" or "console").

        With a ``story`` carrying other outlets, the message says "Also
        reported by: ..." (for Slack, that is what chat.update later sends).
        Raises ConfigError (``path:line: message``) for a broken template.
        """
        context = _alert_context(alert, story)
        item_title = context["title"]
        subject = f"[news-monitor] {alert.watchlist}: {item_title}"
        if kind == "slack":
            section = self._render("alert.slack.j2", context)
            when = context["published"] or f"found {context['found']}"
            blocks: list[Mapping[str, Any]] = [_header(item_title)]
            if section:
                blocks.append(_section(section))
            blocks.append(
                _context_block(
                    [
                        f"*{mrkdwn_escape(context['source'])}*",
                        mrkdwn_escape(when),
                        f"watchlist: {mrkdwn_escape(alert.watchlist)}",
                    ]
                )
            )
            fallback = f"[{alert.watchlist}] {item_title} ({context['source']})"
            return Rendered(
                subject=subject,
                text=_fit(fallback, FALLBACK_LIMIT),
                blocks=tuple(blocks),
            )
        if kind == "email":
            return Rendered(
                subject=subject,
                text=self._render("alert.txt.j2", context),
                html=self._render("alert.html.j2", context),
            )
        if kind == "console":
            return Rendered(subject=subject, text=self._render("alert.txt.j2", context))
        raise ValueError(f"unknown destination kind {kind!r}; expected one of {KINDS}")

    def digest(
        self,
        kind: str,
        title: str,
        groups: Sequence[tuple[str, Sequence[Alert]]],
        stories: Mapping[str, Story] | None = None,
        max_items: int | None = None,
    ) -> Rendered:
        """One message listing stories grouped by watchlist.

        Used for scheduled digests, quiet-hour flushes and "N more stories"
        summaries. Groups without alerts are left out. ``stories`` (by id) lets
        each item say which other outlets carried it. ``max_items`` lists at
        most that many per group, from every feed in turn (the counts stay
        whole, ``group.unlisted`` says how many are not listed): a flood's
        summary stays one cheap message, and shows the other feeds' news too.
        """
        title = one_line(title)
        known = stories or {}
        context_groups = [
            _Group(watchlist=watchlist,
                   items=[_item(a, known.get(a.story_id)) for a in
                          (alerts if max_items is None else in_turn_by_feed(alerts, max_items))],
                   count=len(alerts))
            for watchlist, alerts in groups
            if alerts
        ]
        total = sum(g.count for g in context_groups)
        context: dict[str, Any] = {"title": title, "groups": context_groups, "total": total}
        subject = f"[news-monitor] {title}"
        if kind == "slack":
            body = self._render("digest.slack.j2", context)
            blocks: list[Mapping[str, Any]] = [_header(title)]
            chunks = _chunks(body, SECTION_LIMIT)
            if len(chunks) > MAX_BLOCKS - 1:
                chunks = chunks[: MAX_BLOCKS - 2] + [
                    "…and more (the digest was too long for Slack)"
                ]
            blocks.extend(_section(chunk) for chunk in chunks)
            noun = "story" if total == 1 else "stories"
            return Rendered(
                subject=subject,
                text=_fit(f"{title}: {total} {noun}", FALLBACK_LIMIT),
                blocks=tuple(blocks),
            )
        if kind == "email":
            return Rendered(
                subject=subject,
                text=self._render("digest.txt.j2", context),
                html=self._render("digest.html.j2", context),
            )
        if kind == "console":
            return Rendered(subject=subject, text=self._render("digest.txt.j2", context))
        raise ValueError(f"unknown destination kind {kind!r}; expected one of {KINDS}")

    # -- internals

    def _env_for(self, name: str) -> jinja2.Environment:
        return self._slack if name.endswith(".slack.j2") else self._env

    def _path(self, name: str) -> str:
        return str(self.template_dir / name)

    def _template(self, name: str) -> jinja2.Template:
        """Load a template, turning Jinja's errors into ConfigError with path:line."""
        import jinja2

        try:
            return self._env_for(name).get_template(name)
        except jinja2.TemplateNotFound:
            raise ConfigError("template not found", path=self._path(name), line=1) from None
        except jinja2.TemplateSyntaxError as exc:
            raise ConfigError(
                exc.message or "syntax error",
                path=exc.filename or self._path(name),
                line=exc.lineno,
            ) from exc

    def _render(self, name: str, context: Mapping[str, Any]) -> str:
        template = self._template(name)
        try:
            text = template.render(context)
        except Exception as exc:  # a user's template can fail in any way; say where
            path = template.filename or self._path(name)
            raise ConfigError(
                str(exc) or type(exc).__name__,
                path=path,
                line=_template_line(exc.__traceback__, path),
            ) from exc
        return _tidy(text)


def _template_line(tb: TracebackType | None, path: str) -> int:
    """The template line an error happened on (Jinja rewrites frames to point there)."""
    line = 1
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == path:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def _tidy(text: str) -> str:
    """Strip trailing spaces and collapse runs of blank lines a template left behind."""
    lines = [line.rstrip() for line in text.strip().splitlines()]
    out: list[str] = []
    for line in lines:
        if not line and out and not out[-1]:
            continue
        out.append(line)
    return "\n".join(out)


def _header(title: str) -> Mapping[str, Any]:
    # Escaped although plain_text: Slack treats &, <, > as control characters
    # in every text field, and escaping is what keeps "<!channel>" harmless.
    return {
        "type": "header",
        "text": {"type": "plain_text", "text": _fit(title, HEADER_LIMIT), "emoji": False},
    }


def _mrkdwn_text(text: str) -> Mapping[str, Any]:
    # verbatim: Slack would otherwise turn a feed's plain "@channel" or "#general"
    # into a mention or a channel link; ours are written out (<url|label>), and
    # the escaping covers the rest.
    return {"type": "mrkdwn", "text": _truncate_mrkdwn(text, SECTION_LIMIT), "verbatim": True}


def _section(text: str) -> Mapping[str, Any]:
    return {"type": "section", "text": _mrkdwn_text(text)}


def _context_block(parts: Sequence[str]) -> Mapping[str, Any]:
    return {"type": "context", "elements": [_mrkdwn_text(p) for p in parts if p][:10]}


def _chunks(text: str, limit: int) -> list[str]:
    """Split mrkdwn at line boundaries into pieces of at most ``limit`` characters."""
    chunks: list[str] = []
    current = ""
    for line in text.splitlines():
        line = _truncate_mrkdwn(line, limit)
        candidate = f"{current}\n{line}" if current else line
        if len(candidate) > limit:
            if current.strip():
                chunks.append(current)
            current = line
        else:
            current = candidate
    if current.strip():
        chunks.append(current)
    return chunks


def _sample() -> tuple[Alert, Story]:
    """Sample data for check(): every variable a template may use has a value."""
    when = datetime(2024, 5, 1, 14, 3, tzinfo=UTC)
    entry = Entry(
        feed="Sample Wire",
        key="sample-1",
        guid="sample-1",
        link="https://example.org/news/1",
        canonical_url="https://example.org/news/1",
        title="Sample headline about a grain deal",
        summary="A sample summary that mentions the grain deal and the port.",
        published=when,
    )
    alert = Alert(
        id="sample",
        watchlist="sample",
        destination="sample",
        story_id="sample-story",
        entry=entry,
        terms=("grain deal",),
        created_at=when,
    )
    story = Story(
        id="sample-story",
        title=entry.title,
        first_seen=when,
        sources=(
            Source(feed="Sample Wire", title=entry.title, link=entry.link, seen_at=when),
            Source(
                feed="Other Wire", title="Grain deal", link="https://example.com/2", seen_at=when
            ),
        ),
    )
    return alert, story
