"""YAML -> typed, validated configuration. The only module where raw dicts exist.

``monitor.yaml`` is found from ``--config PATH``, else ``$NEWS_MONITOR_CONFIG``,
else ``./monitor.yaml``. Relative paths in it are relative to the file.
``${VAR}`` is replaced from the environment; a missing variable is an error
naming it. Secrets may also come from files (``token_file:``,
``password_file:``), which is how systemd credentials arrive
(``$CREDENTIALS_DIRECTORY/<id>``).

Every error is a :class:`~monitor.errors.ConfigError` that prints as
``path:line[:column]: message``, the same at start-up, on reload and from
``news-monitor check``. To get there we load YAML with a loader that remembers
where each value came from (:class:`_Located`), validate with pydantic, and map
pydantic's error locations back to lines.

A broken ``monitor.yaml`` is fatal (there is nothing sensible to run); a broken
watchlist is not: it is reported and the other watchlists load.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import stat
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, Protocol, TypeVar
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from monitor import redact
from monitor.errors import ConfigError, QueryError
from monitor.types import Feed, Mode, QuietHours, Watchlist

if TYPE_CHECKING:
    from yaml import _yaml

logger = logging.getLogger(__name__)

DEFAULT_CONFIG = "monitor.yaml"
ENV_CONFIG = "NEWS_MONITOR_CONFIG"
def _bundled_templates() -> Path:
    """The shipped templates: beside the package in a checkout, else where a wheel put them."""
    import sys

    checkout = Path(__file__).resolve().parent.parent / "templates"
    installed = Path(sys.prefix) / "share" / "news-monitor" / "templates"
    return checkout if checkout.is_dir() or not installed.is_dir() else installed


BUNDLED_TEMPLATES = _bundled_templates()

# --------------------------------------------------------------------------- units

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, None: 1}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(b|kb|mb|gb|kib|mib|gib)?\s*$", re.I)
_SIZES = {"b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "kib": 2**10, "mib": 2**20,
          "gib": 2**30, None: 1}
_CLOCK = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")


#: The longest duration any setting takes: dates a few of them apart stay far
#: inside what a datetime holds (year 9999), where 10**12 seconds did not.
MAX_DURATION = timedelta(days=3650)
#: The largest size any setting takes.
MAX_SIZE = 2**40


def parse_duration(value: object) -> timedelta:
    """``90`` (seconds), ``"20s"``, ``"5m"``, ``"48h"``, ``"7d"`` -> timedelta, from 0
    to :data:`MAX_DURATION`."""
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, bool):
        raise ValueError(f"expected a duration like 5m or 48h, got {value!r}")
    elif isinstance(value, int | float):
        seconds = float(value)
    else:
        m = _DURATION.match(str(value))
        if not m:
            raise ValueError(f"expected a duration like 30s, 5m, 48h or 7d, got {value!r}")
        seconds = float(m.group(1)) * _UNITS[m.group(2)]
    if not 0 <= seconds <= MAX_DURATION.total_seconds():  # also NaN
        raise ValueError(f"expected a duration from 0 to {MAX_DURATION.days}d, got {value!r}")
    return timedelta(seconds=seconds)


def parse_size(value: object) -> int:
    """``1048576``, ``"10MB"``, ``"512KiB"`` -> bytes, from 1 to :data:`MAX_SIZE`."""
    if isinstance(value, int) and not isinstance(value, bool):
        size = float(value)
    else:
        m = _SIZE.match(str(value))
        if not m:
            raise ValueError(f"expected a size like 10MB, got {value!r}")
        unit = m.group(2).lower() if m.group(2) else None
        size = float(m.group(1)) * _SIZES[unit]
    if not 1 <= size <= MAX_SIZE:
        raise ValueError(f"expected a size from 1 byte to 1TiB, got {value!r}")
    return int(size)


def _clock(value: object) -> str:
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 24 * 60:
        # YAML 1.1 reads an unquoted 22:00 as a sexagesimal number (07:00 stays text)
        hours, minutes = divmod(value, 60)
        raise ValueError(f"got the number {value}: YAML reads an unquoted {hours}:{minutes:02d} "
                         f"as one; quote it: '{hours:02d}:{minutes:02d}'")
    if not isinstance(value, str) or not _CLOCK.match(value):
        raise ValueError(f"expected a time of day like 08:00, got {value!r}")
    return value


def _timezone(value: object) -> str:
    try:
        ZoneInfo(str(value))
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown timezone {value!r}") from None
    return str(value)


def _positive_interval(v: timedelta) -> timedelta:
    """An interval of 0 would poll a feed as fast as it answers, and back a failing
    one off by nothing (0 doubled is 0)."""
    if v <= timedelta(0):
        raise ValueError("must be longer than 0")
    return v


#: Control characters, line and paragraph separators: a name is printed in log
#: lines and tables, where a newline in it would forge a line.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def _plain_name(value: str) -> str:
    if _CONTROL.search(value):
        raise ValueError(f"a name cannot hold control characters (a newline, a tab): "
                         f"{value[:60]!r}")
    return value


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]
#: An interval or a timeout: longer than 0 (a timeout of 0 fails every try).
PositiveDuration = Annotated[timedelta, BeforeValidator(parse_duration),
                             AfterValidator(_positive_interval)]
#: A feed's, watchlist's or destination's name.
Name = Annotated[str, Field(min_length=1), AfterValidator(_plain_name)]
Size = Annotated[int, BeforeValidator(parse_size)]
Clock = Annotated[str, BeforeValidator(_clock)]
TimeZone = Annotated[str, BeforeValidator(_timezone)]

# ------------------------------------------------------------------- located YAML


class _Located:
    """Where each value of a loaded YAML document came from.

    ``marks[path]`` is ``(line, column)`` (1-based) for every mapping key path
    and list index path, e.g. ``("feeds", 0, "url")``.
    """

    def __init__(self, file: str, text: str = "") -> None:
        self.file = file
        self.text = text  # the document, for positions inside a scalar
        self.marks: dict[tuple[Any, ...], tuple[int, int]] = {}
        self.scalars: dict[tuple[Any, ...], yaml.ScalarNode] = {}

    def where(self, loc: Sequence[Any]) -> tuple[int | None, int | None]:
        path = tuple(loc)
        while path:
            if path in self.marks:
                return self.marks[path]
            path = path[:-1]
        return self.marks.get((), (None, None))

    def error(self, message: str, loc: Sequence[Any] = ()) -> ConfigError:
        line, column = self.where(loc)
        return ConfigError(message, path=self.file, line=line, column=column)


_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")

#: Aliases one document may use, and values it may expand to: far above any
#: real config (a thousand feeds are a few thousand values), far below a bomb.
MAX_ALIASES = 1000
MAX_VALUES = 200_000


class _BoundedComposer(yaml.composer.Composer):
    """PyYAML's Composer, refusing recursive aliases and counting alias uses.

    ``&a [x, *a]`` composes to a node that contains itself (constructing it
    never ends); an alias bomb composes fine and explodes when expanded. The
    first is refused here, while composing; the second is bounded by
    :data:`MAX_ALIASES` here and by :data:`MAX_VALUES` in :func:`_construct`.
    It composes the events of either parser below: the checks and the nodes
    (their marks, hence every error's line) are the same on both.
    """

    _aliases: int
    _composing: list[str]  # anchors whose node is not finished yet

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        event = self.peek_event()  # type: ignore[attr-defined]
        if isinstance(event, yaml.AliasEvent):
            mark = _mark(event.start_mark)
            self._aliases += 1
            if event.anchor in self._composing:
                raise yaml.composer.ComposerError(
                    None, None, f"recursive alias *{event.anchor} (a value inside itself)",
                    mark)
            if self._aliases > MAX_ALIASES:
                raise yaml.composer.ComposerError(
                    None, None, f"more than {MAX_ALIASES} aliases", mark)
            return super().compose_node(parent, index)
        anchor = getattr(event, "anchor", None)
        if anchor is None:
            return super().compose_node(parent, index)
        self._composing.append(anchor)
        try:
            return super().compose_node(parent, index)
        finally:
            self._composing.pop()


def _mark(mark: yaml.Mark | _yaml.Mark | None) -> yaml.Mark | None:
    """libyaml's mark as PyYAML's (the same line and column; no snippet)."""
    if mark is None or isinstance(mark, yaml.Mark):
        return mark
    return yaml.Mark(mark.name, mark.index, mark.line, mark.column, None, 0)


class _Composing(Protocol):
    def get_single_node(self) -> yaml.Node | None: ...
    def dispose(self) -> None: ...


class _BoundedLoader(_BoundedComposer, yaml.SafeLoader):
    """The pure-Python scanner and parser: the reference, whose messages the
    errors quote."""

    def __init__(self, stream: str) -> None:
        yaml.SafeLoader.__init__(self, stream)
        self._aliases = 0
        self._composing = []


class _Unlike(Exception):
    """A document libyaml may read otherwise than PyYAML: read by the reference."""


#: A block scalar's header with a comment right after it: libyaml takes it, PyYAML
#: refuses it.
_HEADER_COMMENT = re.compile(r"[|>][-+0-9]*#")


def _libyaml_agrees(text: str) -> bool:
    """Whether libyaml reads ``text`` as PyYAML would, as far as the text tells:
    libyaml takes a tab for white space where PyYAML refuses it, counts columns
    differently after a byte-order mark, and takes ``|#``."""
    return "\t" not in text and "\ufeff" not in text and not _HEADER_COMMENT.search(text)


_CBoundedLoader: Callable[[str], _Composing] | None = None

if yaml.__with_libyaml__:
    from yaml._yaml import CParser

    class _CLoader(_BoundedComposer, CParser, yaml.resolver.Resolver):
        """libyaml's scanner and parser (C) under the same Composer: PyYAML's
        scanner in Python is most of the time a long config takes to load.

        Where the two part, it raises :class:`_Unlike`: an explicit tag (libyaml
        takes some PyYAML refuses), an empty plain value (libyaml marks it
        elsewhere, and reads a lone ``!`` as ``""`` where PyYAML reads null), and a
        ``?`` inside a plain value in a flow collection (PyYAML ends the value
        there)."""

        def __init__(self, stream: str) -> None:
            CParser.__init__(self, stream)
            yaml.composer.Composer.__init__(self)
            yaml.resolver.Resolver.__init__(self)
            self._aliases = 0
            self._composing = []
            self._flow = 0  # flow collections open around the node composed

        def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
            event = self.peek_event()
            if getattr(event, "tag", None) is not None:
                raise _Unlike
            if isinstance(event, yaml.ScalarEvent) and not event.style and (
                    not event.value or self._flow and "?" in event.value):
                raise _Unlike
            flow = isinstance(event, yaml.CollectionStartEvent) and bool(event.flow_style)
            self._flow += flow
            try:
                return super().compose_node(parent, index)
            finally:
                self._flow -= flow

        def compose_scalar_node(self, anchor: dict[Any, yaml.Node]) -> yaml.ScalarNode:
            node = super().compose_scalar_node(anchor)
            node.style = node.style or None  # libyaml's plain is "", PyYAML's None
            return node

    _CBoundedLoader = _CLoader


#: The largest config or watchlist file read (a config of 10,000 feeds is about 1 MB).
MAX_FILE_BYTES = 32 * 1024 * 1024


def _load_yaml(path: Path, env: Mapping[str, str]) -> tuple[Any, _Located]:
    try:
        text = read_text(path)
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8"
        raise ConfigError(f"cannot read: {reason or exc}", path=str(path)) from exc
    return _parse(text, path, env)


def read_text(path: Path, limit: int = MAX_FILE_BYTES) -> str:
    """A config file's text: a regular file only, of at most ``limit`` bytes. A FIFO
    named x.yaml would block start-up and the reload thread for good, and a link
    to /dev/zero would be read without end. Opened without blocking, then
    looked at: what is opened is what is checked."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file")
        data = f.read(limit + 1)
    if len(data) > limit:
        raise OSError(errno.EFBIG, f"larger than {limit // (1024 * 1024)} MB")
    return data.decode("utf-8")


def _parse(text: str, path: Path, env: Mapping[str, str]) -> tuple[Any, _Located]:
    """The value of ``text`` and where its parts came from: read by libyaml where it
    reads as PyYAML would, else (and to word any error) by PyYAML alone."""
    if _CBoundedLoader is not None and _libyaml_agrees(text):
        try:
            return _read(text, path, env, _CBoundedLoader)
        except Exception:  # an error, or _Unlike: the reference reads it, and words it
            pass
    return _read(text, path, env, _BoundedLoader)


def _read(text: str, path: Path, env: Mapping[str, str],
          loader: Callable[[str], _Composing]) -> tuple[Any, _Located]:
    located = _Located(str(path), text)
    try:
        composer = loader(text)
        try:
            node = composer.get_single_node()
        finally:
            composer.dispose()
        if node is None:
            return None, located
        value = _construct(node, (), located, env, [0], yaml.constructor.SafeConstructor())
        return value, located
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise ConfigError(
            f"invalid YAML: {exc.problem or exc.context}",
            path=str(path),
            line=mark.line + 1 if mark else None,
            column=mark.column + 1 if mark else None,
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"invalid YAML: {exc}", path=str(path)) from None
    except RecursionError:
        raise ConfigError("invalid YAML: nested too deeply", path=str(path), line=1) from None


def _construct(node: yaml.Node, loc: tuple[Any, ...], located: _Located,
               env: Mapping[str, str], count: list[int],
               scalars: yaml.constructor.SafeConstructor) -> Any:
    """The value of ``node``; ``count`` (one cell, shared) bounds how many values
    the document expands to, however its aliases nest. ``scalars`` reads the
    scalars, one for the whole document."""
    count[0] += 1
    if count[0] > MAX_VALUES:
        raise located.error(f"the document expands to more than {MAX_VALUES} values "
                            "(aliases nested in aliases?)", loc)
    located.marks.setdefault(loc, (node.start_mark.line + 1, node.start_mark.column + 1))
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise ConfigError("a key must be a plain value, not a list or mapping",
                                  path=located.file, line=key_node.start_mark.line + 1,
                                  column=key_node.start_mark.column + 1)
            key = _scalar(key_node, located, scalars)
            if key == "<<":
                raise located.error("YAML merge keys are not supported", loc)
            sub = (*loc, key)
            if key in out:  # YAML says keys are unique; PyYAML keeps the last silently
                line, column = located.marks[sub]
                raise ConfigError(f"{key!r} is given twice (first at line {line}, column "
                                  f"{column})", path=located.file,
                                  line=key_node.start_mark.line + 1,
                                  column=key_node.start_mark.column + 1)
            located.marks[sub] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            out[key] = _construct(value_node, sub, located, env, count, scalars)
        return out
    if isinstance(node, yaml.SequenceNode):
        items = []
        for i, item in enumerate(node.value):
            items.append(_construct(item, (*loc, i), located, env, count, scalars))
        return items
    assert isinstance(node, yaml.ScalarNode)
    located.scalars[loc] = node
    located.marks[loc] = (node.start_mark.line + 1, node.start_mark.column + 1)
    value = _scalar(node, located, scalars)
    if isinstance(value, str) and "${" in value:

        def substitute(m: re.Match[str]) -> str:
            name = m.group(1)
            if name not in env:
                raise located.error(f"environment variable {name} is not set", loc)
            return env[name]

        value = _VAR.sub(substitute, value)
    return value


def _scalar(node: yaml.ScalarNode, located: _Located,
            scalars: yaml.constructor.SafeConstructor) -> Any:
    """One scalar as SafeLoader reads it; an unknown tag (``!!python/name:``) or a
    value its tag cannot take (``!!int x``) is a ConfigError at its line."""
    try:
        value = scalars.construct_object(node)
    except yaml.MarkedYAMLError:
        raise
    except (yaml.YAMLError, ValueError, TypeError, OverflowError) as exc:
        raise ConfigError(f"invalid value: {exc}", path=located.file,
                          line=node.start_mark.line + 1,
                          column=node.start_mark.column + 1) from None
    try:
        hash(value)
    except TypeError:
        raise ConfigError("invalid value", path=located.file,
                          line=node.start_mark.line + 1) from None
    return value


# ---------------------------------------------------------------------- the schema


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class PollSettings(_Model):
    interval: PositiveDuration = timedelta(minutes=5)
    timeout: PositiveDuration = timedelta(seconds=20)
    concurrency: int = Field(50, ge=1, le=10_000)
    per_host: int = Field(4, ge=1, le=1000)
    max_bytes: Size = 10 * 10**6
    #: Entries taken from one feed in one poll; the rest are logged and left out.
    max_entries: int = Field(1000, ge=1, le=1_000_000)
    user_agent: str = "news-monitor/0.1 (+https://github.com/news-monitor/news-monitor)"
    # The bounds of every feed's schedule: configured intervals, caching headers,
    # <ttl>, a quiet feed's rate and failure backoff all stay within them
    # (Retry-After aside). No floor by default: a feed's interval is what it says.
    min_interval: Duration = timedelta(0)
    max_interval: PositiveDuration = timedelta(hours=1)
    # A feed failing for this long raises one alert to the `ops:` destinations.
    alert_after: Duration = timedelta(hours=24)
    # How often the scheduler looks for due feeds (more often if a feed's interval
    # is shorter).
    tick: PositiveDuration = timedelta(seconds=1)
    # How long an instance's claim on a due feed or an outbox lane lasts unless it
    # renews it: a dead instance's work is taken over after this. Longer than a
    # poll (timeout, parse, ingest) and than one delivery.
    lease: PositiveDuration = timedelta(seconds=60)
    # Processes that fetch and parse feeds (monitor.workers.poll_workers); unset: one
    # per core from 1,000 feeds, else none; 0: poll on the service's loop.
    parse_workers: int | None = Field(None, ge=0, le=64)

    @model_validator(mode="after")
    def _lease_outlasts_a_poll(self) -> PollSettings:
        if self.lease <= self.timeout:
            raise ValueError(f"lease ({self.lease}) must be longer than timeout "
                             f"({self.timeout}): a claim must outlast the poll it covers")
        return self

    @model_validator(mode="after")
    def _bounds_in_order(self) -> PollSettings:
        if self.min_interval > self.max_interval:
            raise ValueError(f"min_interval ({self.min_interval}) must not be longer than "
                             f"max_interval ({self.max_interval})")
        return self


class DedupeConfig(_Model):
    window: Duration = timedelta(hours=48)
    method: Literal["tfidf", "semantic", "url"] = "tfidf"
    threshold: float | None = Field(None, gt=0, le=1)
    one_concept_threshold: float | None = Field(None, gt=0, le=1)
    semantic_threshold: float | None = Field(None, gt=0, le=1)
    semantic_concept_threshold: float | None = Field(None, gt=0, le=1)
    semantic_single_threshold: float | None = Field(None, gt=0, le=1)
    semantic_tightness_margin: float | None = Field(None, ge=0, le=1)
    semantic_conflict_penalty: float | None = Field(None, ge=0, le=1)

    def settings(self) -> dict[str, Any]:
        """The values for ``dedupe.DedupeSettings`` that the file sets."""
        return {k: v for k, v in self.model_dump().items() if v is not None}


class QuietHoursConfig(_Model):
    start: Clock = Field(alias="from")
    end: Clock = Field(alias="to")
    timezone: TimeZone = "UTC"

    def value(self) -> QuietHours:
        return QuietHours(start=self.start, end=self.end, timezone=self.timezone)


def _secret_from_file(value: str | None, file: str | None, what: str) -> str | None:
    if file is None:
        return value
    if value is not None:
        raise ValueError(f"give either {what} or {what}_file, not both")
    try:
        secret = read_text(Path(file), limit=_SECRET_BYTES).strip()
    except OSError as exc:
        raise ValueError(f"cannot read {what}_file {file}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ValueError(f"cannot read {what}_file {file}: not UTF-8") from None
    if not secret:
        raise ValueError(f"{what}_file {file} is empty")
    return secret


#: The largest secret file read (a token, a password, a webhook URL).
_SECRET_BYTES = 64 * 1024


class SlackDestination(_Model):
    type: Literal["slack"]
    channel: str | None = None
    token: str | None = Field(None, repr=False)
    token_file: str | None = None
    webhook_url: str | None = Field(None, repr=False)
    webhook_url_file: str | None = None
    base_url: str = "https://slack.com/api/"
    thread_updates: bool = False
    timeout: PositiveDuration = timedelta(seconds=20)

    @model_validator(mode="after")
    def _check(self) -> SlackDestination:
        token = _secret_from_file(self.token, self.token_file, "token")
        hook = _secret_from_file(self.webhook_url, self.webhook_url_file, "webhook_url")
        object.__setattr__(self, "token", token)
        object.__setattr__(self, "webhook_url", hook)
        if hook and token:
            raise ValueError("give either token (+ channel) or webhook_url, not both")
        if not hook and not token:
            raise ValueError("needs token and channel, or webhook_url")
        if token and not self.channel:
            raise ValueError("a token destination needs a channel")
        if hook and not hook.startswith(("https://", "http://")):
            raise ValueError("webhook_url must be an http(s) URL")
        if hook:  # else every alert would be retried for a day (the URL is a secret: unsaid)
            try:
                parts = urlsplit(hook)
                parts.port  # noqa: B018 (raises on a port that is no number or out of range)
            except ValueError:
                raise ValueError("webhook_url is not a valid URL (its port?)") from None
            if not parts.hostname:
                raise ValueError("webhook_url has no host")
        return self


class EmailDestination(_Model):
    type: Literal["email"]
    host: str = "localhost"
    port: int | None = Field(None, ge=1, le=65535)
    starttls: bool | None = None
    tls: bool = False
    username: str | None = None
    password: str | None = Field(None, repr=False)
    password_file: str | None = None
    sender: str = Field(alias="from")
    to: tuple[str, ...] = Field(min_length=1)
    timeout: PositiveDuration = timedelta(seconds=30)

    @field_validator("to", mode="before")
    @classmethod
    def _one_or_many(cls, v: object) -> object:
        return [v] if isinstance(v, str) else v

    @model_validator(mode="after")
    def _check(self) -> EmailDestination:
        password = _secret_from_file(self.password, self.password_file, "password")
        object.__setattr__(self, "password", password)
        if self.tls and self.starttls:
            raise ValueError("tls (implicit TLS) and starttls are mutually exclusive")
        if password and not self.username:
            raise ValueError("a password needs a username")
        return self


class ConsoleDestination(_Model):
    type: Literal["console"]


Destination = Annotated[
    SlackDestination | EmailDestination | ConsoleDestination, Field(discriminator="type")
]


class FeedConfig(_Model):
    name: Name
    url: str
    interval: PositiveDuration | None = None

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not v.startswith(("http://", "https://", "file://")):
            raise ValueError(f"feed url must be http(s):// or file://, got {redact.url(v)!r}")
        try:
            urlsplit(v).port  # noqa: B018  (what reads the port is what checks it)
        except ValueError as exc:
            raise ValueError(f"feed url {redact.url(v)!r}: {exc}") from None
        return v


class HttpSettings(_Model):
    """The status page, /healthz and /metrics. Off unless configured: it tells anyone
    who can reach it what the team watches, so the default is loopback only."""

    listen: str = "127.0.0.1:8325"

    @field_validator("listen")
    @classmethod
    def _listen(cls, v: str) -> str:
        host, sep, port = v.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError(f"expected HOST:PORT like 127.0.0.1:8325, got {v!r}")
        return v

    @property
    def host(self) -> str:
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.listen.rpartition(":")[2])


#: The state URLs monitor.store opens.
STATE_SCHEMES = ("sqlite:///", "postgresql://", "postgres://")


class MonitorFile(_Model):
    state: str = "sqlite:///state/monitor.db"

    @field_validator("state")
    @classmethod
    def _known_store(cls, v: str) -> str:
        if not v.startswith(STATE_SCHEMES):
            raise ValueError(f"{redact.url(v)} is not a store: use sqlite:///PATH or "
                             "postgresql://USER@HOST/DB")
        return v

    poll: PollSettings = PollSettings()
    backfill: Duration = timedelta(0)
    retention: Duration = timedelta(days=30)
    dedupe: DedupeConfig = DedupeConfig()
    quiet_hours: QuietHoursConfig | None = None
    templates: str | None = None
    feeds: tuple[FeedConfig, ...] = ()
    watchlists: str | tuple[str, ...] = "watchlists/"
    destinations: dict[str, Destination] = {}
    http: HttpSettings | None = None
    # On SIGTERM: how long fetches and deliveries under way may take to finish.
    stop_timeout: Duration = timedelta(seconds=10)
    ops: tuple[str, ...] = ()  # destinations told when a feed fails for poll.alert_after

    @field_validator("ops", mode="before")
    @classmethod
    def _ops_one_or_many(cls, v: object) -> object:
        return [v] if isinstance(v, str) else v

    @field_validator("destinations")
    @classmethod
    def _destination_names(cls, v: dict[str, Destination]) -> dict[str, Destination]:
        for name in v:
            _plain_name(name)
        return v

    @model_validator(mode="after")
    def _ops_known(self) -> MonitorFile:
        for name in self.ops:
            if name not in self.destinations:
                raise ValueError(f"ops: unknown destination {name!r}")
        return self

    @field_validator("feeds")
    @classmethod
    def _unique_feeds(cls, v: tuple[FeedConfig, ...]) -> tuple[FeedConfig, ...]:
        seen: set[str] = set()
        for f in v:
            if f.name in seen:
                raise ValueError(f"two feeds are named {f.name!r}; feed names must be unique")
            seen.add(f.name)
        return v


class WatchlistFile(_Model):
    name: Name
    all: tuple[str, ...] = ()
    any: tuple[str, ...] = ()
    none: tuple[str, ...] = ()
    query: str | None = None
    feeds: Literal["all"] | tuple[str, ...] = "all"
    notify: tuple[str, ...] = Field(min_length=1)
    mode: Mode = Mode.IMMEDIATE
    every: Duration | None = None
    at: tuple[Clock, ...] = ()
    timezone: TimeZone = "UTC"
    quiet_hours: QuietHoursConfig | None = None
    urgent: bool = False
    max_per_hour: int | None = Field(None, ge=1)
    max_per_poll: int = Field(20, ge=1)

    @field_validator("all", "any", "none", "notify", "at", mode="before")
    @classmethod
    def _one_or_many(cls, v: object) -> object:
        return [v] if isinstance(v, str) else v

    @model_validator(mode="after")
    def _check(self) -> WatchlistFile:
        if not (self.all or self.any or self.query):
            raise ValueError("needs a query, or terms under all or any")
        if not self.name.strip():
            raise ValueError("name is blank")
        if self.feeds != "all" and not self.feeds:
            raise ValueError("feeds: an empty list matches no feed: name feeds, or say all")
        if self.mode is Mode.DIGEST and not (self.every or self.at):
            raise ValueError("mode: digest needs every (e.g. 1h) or at (e.g. ['08:00'])")
        return self


# ------------------------------------------------------------------- public values


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    """A loaded, validated configuration."""

    path: Path
    state: str
    poll: PollSettings
    backfill: timedelta
    retention: timedelta
    dedupe: DedupeConfig
    templates: Path
    feeds: tuple[Feed, ...]
    watchlists: tuple[Watchlist, ...]
    destinations: Mapping[str, SlackDestination | EmailDestination | ConsoleDestination]
    ops: tuple[str, ...] = ()
    watchlist_errors: tuple[ConfigError, ...] = field(default=())
    http: HttpSettings | None = None
    stop_timeout: timedelta = timedelta(seconds=10)


def find_config(arg: str | None, env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    return Path(arg or env.get(ENV_CONFIG) or DEFAULT_CONFIG)


def _validation_errors(exc: ValidationError, located: _Located,
                       raw: Any = None) -> list[ConfigError]:
    out = []
    for err in exc.errors():
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p in _UNION_TAGS))
        shown = _named(loc, raw)
        msg = err["msg"]
        msg = msg.removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = f"unknown key {loc[-1]!r}"
        elif err["type"] == "missing":
            msg = f"missing required key {loc[-1]!r}"
        dotted = ".".join(str(p) for p in shown)
        text = f"{dotted}: {msg}" if dotted and err["type"] != "extra_forbidden" else msg
        out.append(located.error(text, loc))
    return out


def _named(loc: tuple[Any, ...], raw: Any) -> tuple[Any, ...]:
    """``("feeds", 0, "url")`` as ``("feeds['BBC World']", "url")``: people know their
    feeds by name, not by position."""
    if (len(loc) >= 2 and loc[0] == "feeds" and isinstance(loc[1], int)
            and isinstance(raw, dict) and isinstance(raw.get("feeds"), list)
            and loc[1] < len(raw["feeds"]) and isinstance(raw["feeds"][loc[1]], dict)
            and isinstance(raw["feeds"][loc[1]].get("name"), str)):
        return (f"feeds[{raw['feeds'][loc[1]]['name']!r}]", *loc[2:])
    return loc


_UNION_TAGS = {"slack", "email", "console", "function-after[_check(), SlackDestination]",
               "function-after[_check(), EmailDestination]"}


_M = TypeVar("_M", bound=BaseModel)


def _validate(model: type[_M], raw: dict[Any, Any], located: _Located) -> _M:
    """pydantic validation with errors mapped back to the file's lines."""
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        found = _validation_errors(exc, located, raw)
        raise found[0] if len(found) == 1 else _Many(found) from None


def _resolve(base: Path, p: str) -> Path:
    q = Path(os.path.expanduser(p))
    return q if q.is_absolute() else base / q


def load(path: str | Path, env: Mapping[str, str] | None = None) -> Config:
    """Load and validate ``monitor.yaml`` and its watchlists.

    Raises ConfigError for a broken ``monitor.yaml``; broken watchlists are
    returned in ``Config.watchlist_errors`` and left out.
    """
    env = os.environ if env is None else env
    path = Path(path)
    raw, located = _load_yaml(path, env)
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise located.error("expected a mapping of settings at the top level")
    model = _validate(MonitorFile, raw, located)
    base = path.resolve().parent

    state = model.state
    if state.startswith("sqlite:///") and not state.startswith("sqlite:////"):
        rel = state.removeprefix("sqlite:///")
        if rel != ":memory:":
            state = "sqlite:///" + str(_resolve(base, rel))

    feeds = tuple(
        Feed(name=f.name, url=_file_url(base, f.url), interval=f.interval or model.poll.interval)
        for f in model.feeds
    )
    if model.templates:
        templates = _resolve(base, model.templates)
    elif (base / "templates").is_dir():
        templates = base / "templates"
    else:
        templates = BUNDLED_TEMPLATES

    files = list(_watchlist_files(base, model.watchlists, located))
    watchlists: list[Watchlist] = []
    errors: list[ConfigError] = []
    names: dict[str, str] = {}
    feed_names = {f.name for f in feeds}
    for wl_path in files:
        try:
            wl = load_watchlist(wl_path, env, destinations=model.destinations.keys(),
                                feed_names=feed_names, default_quiet=model.quiet_hours)
        except ConfigError as exc:
            errors.extend(exc.errors if isinstance(exc, _Many) else [exc])
            continue
        except Exception as exc:  # a bug of ours: still only this watchlist's problem
            logger.exception("watchlist.crash path=%s", wl_path)
            errors.append(ConfigError(f"cannot load: {type(exc).__name__}: {exc}",
                                      path=str(wl_path)))
            continue
        if wl.name in names:
            errors.append(ConfigError(
                f"watchlist name {wl.name!r} is already used by {names[wl.name]}",
                path=str(wl_path), line=wl.line))
            continue
        names[wl.name] = str(wl_path)
        watchlists.append(wl)

    return Config(
        path=path, state=state, poll=model.poll, backfill=model.backfill,
        retention=model.retention, dedupe=model.dedupe, templates=templates,
        feeds=feeds, watchlists=tuple(watchlists), destinations=dict(model.destinations),
        ops=model.ops, watchlist_errors=tuple(errors), http=model.http,
        stop_timeout=model.stop_timeout,
    )


def _file_url(base: Path, url: str) -> str:
    if url.startswith("file://") and not url.startswith("file:///"):
        return "file://" + str(_resolve(base, url.removeprefix("file://")))
    return url


def _watchlist_files(base: Path, spec: str | tuple[str, ...],
                     located: _Located) -> Iterator[Path]:
    items = [spec] if isinstance(spec, str) else list(spec)
    for i, item in enumerate(items):
        p = _resolve(base, item)
        loc: tuple[Any, ...] = ("watchlists",) if isinstance(spec, str) else ("watchlists", i)
        if p.is_dir():  # not hidden files: editors' locks, macOS's ._ copies
            yield from sorted(q for q in [*p.glob("*.yaml"), *p.glob("*.yml")]
                              if not q.name.startswith("."))
        elif p.is_file():
            yield p
        else:
            raise located.error(f"watchlists: {item} does not exist", loc)


class _Many(ConfigError):
    """Several errors from one file, reported together."""

    def __init__(self, errors: list[ConfigError]) -> None:
        super().__init__("; ".join(str(e) for e in errors))
        self.errors = errors

    def __str__(self) -> str:
        return "\n".join(str(e) for e in self.errors)


def split_errors(exc: ConfigError) -> list[ConfigError]:
    """The individual errors inside ``exc`` (one, or several from one file)."""
    return list(exc.errors) if isinstance(exc, _Many) else [exc]


def load_watchlist(
    path: str | Path,
    env: Mapping[str, str] | None = None,
    *,
    destinations: Any = None,
    feed_names: set[str] | None = None,
    default_quiet: QuietHoursConfig | None = None,
) -> Watchlist:
    """Load one watchlist file. ``destinations``/``feed_names``, when given, are checked."""
    env = os.environ if env is None else env
    path = Path(path)
    raw, located = _load_yaml(path, env)
    if not isinstance(raw, dict):
        raise located.error("a watchlist is a mapping with name, all/any/none or query, notify")
    model = _validate(WatchlistFile, raw, located)

    query_line = query_column = None
    node = located.scalars.get(("query",))
    if node is not None:
        query_line, query_column = node.start_mark.line + 1, node.start_mark.column + 1
    _check_terms(model, located)
    _check_query(model, located, node)
    if destinations is not None:
        for i, d in enumerate(model.notify):
            if d not in destinations:
                known = ", ".join(sorted(destinations)) or "none configured"
                raise located.error(f"notify: unknown destination {d!r} (known: {known})",
                                    ("notify", i))
    if feed_names is not None and model.feeds != "all":
        for i, f in enumerate(model.feeds):
            if f not in feed_names:
                known = ", ".join(repr(n) for n in sorted(feed_names)) or "none configured"
                raise located.error(f"feeds: unknown feed {f!r} (known: {known})", ("feeds", i))
    quiet = model.quiet_hours or default_quiet
    return Watchlist(
        name=model.name, path=str(path), all=model.all, any=model.any, none=model.none,
        query=model.query,
        feeds=None if model.feeds == "all" else frozenset(model.feeds),
        notify=model.notify, mode=model.mode, every=model.every, at=model.at,
        timezone=model.timezone, quiet_hours=quiet.value() if quiet else None,
        urgent=model.urgent, max_per_hour=model.max_per_hour, max_per_poll=model.max_per_poll,
        line=located.where(())[0] or 1, query_line=query_line, query_column=query_column,
    )


def _check_terms(model: WatchlistFile, located: _Located) -> None:
    for key in ("all", "any", "none"):
        for i, term in enumerate(getattr(model, key)):
            if not term.strip().rstrip("*").strip():
                raise located.error(f"{key}: empty term", (key, i))


def _check_query(model: WatchlistFile, located: _Located, node: yaml.ScalarNode | None) -> None:
    """Parse the query (errors point into it) and validate the whole condition."""
    from monitor import query as q  # pure; imported here so config stays importable first

    if model.query is not None:
        try:
            q.parse(model.query)
        except QueryError as exc:
            line, column = _query_position(node, model.query, exc.offset, located.text)
            raise ConfigError(f"query: {exc.message}", path=located.file, line=line,
                              column=column) from None
    try:
        q.condition(all=model.all, any=model.any, none=model.none, query=model.query)
    except QueryError as exc:
        key = "query" if model.query is not None else next(
            (k for k in ("all", "any", "none") if getattr(model, k)), "name")
        raise located.error(f"{key}: {exc.message}", (key,)) from None


def _query_position(node: yaml.ScalarNode | None, text: str, offset: int,
                    source: str = "") -> tuple[int | None, int | None]:
    """Map an offset inside a query string to the YAML file's line and column: by
    walking the scalar as written beside its value (what folding, indentation,
    quotes and escapes took out is stepped over), else by its style alone."""
    if node is None:
        return None, None
    found = _in_source(node, text, offset, source)
    if found is not None:
        return found
    line, column = node.start_mark.line + 1, node.start_mark.column + 1
    if node.style in ("'", '"'):
        column += 1
    elif node.style in ("|", ">"):
        line += 1
        column = node.end_mark.column + 1 if "\n" not in text else 1
    before = text[:offset]
    if "\n" in before and node.style in ("|", None):
        line += before.count("\n")
        return line, offset - before.rfind("\n")
    return line, column + offset


def _in_source(node: yaml.ScalarNode, text: str, offset: int,
               source: str) -> tuple[int, int] | None:
    """(line, column) in ``source`` of ``text[offset]`` (just past the end for
    ``offset == len(text)``), or None where the two cannot be lined up: each
    character of the value is the next like it in the scalar as written, a
    space may stand for a folded line break; a ${VAR} makes them differ."""
    lines = source.splitlines(keepends=True)
    start, end = node.start_mark, node.end_mark
    if not text or end.line >= len(lines) + 1 or start.line >= len(lines):
        return None
    first = sum(len(x) for x in lines[:start.line]) + start.column
    last = sum(len(x) for x in lines[:end.line]) + end.column
    raw = source[first:last]
    if "${" in raw:
        return None
    at = min(offset, len(text) - 1)
    i = 0
    for j in range(at + 1):
        ch = text[j]
        while i < len(raw) and raw[i] != ch and not (ch == " " and raw[i] in "\r\n"):
            i += 1
        if i == len(raw):
            return None
        if j < at:
            i += 1
    i += offset - at  # past the end: the column after the last character
    absolute = first + i
    line_start = source.rfind("\n", 0, absolute) + 1
    return source.count("\n", 0, absolute) + 1, absolute - line_start + 1
