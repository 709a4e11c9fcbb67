"""Live reload: which files to watch, and whether a new configuration may replace the old.

A reload is all or nothing. :func:`candidate` loads the config, every watchlist
and every template and collects every problem; only a candidate without
problems replaces the running set (``Service.reload``), so a typo in one
watchlist never silently drops it, and the error (``path:line:column:
message``) is logged and shown in STATUS= and on the status page while the
previous set stays in force.

Some settings are wired into resources opened at start-up (the store, the
HTTP client, the destinations' connections, the story index): a change to one
of them is reported as a problem saying to restart, rather than half applied.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from monitor import config as cfg
from monitor.errors import ConfigError
from monitor.types import Feed

logger = logging.getLogger(__name__)

#: Settings that only apply on restart, as (what the message calls it, how to read it).
_RESTART_ONLY: tuple[tuple[str, Callable[[cfg.Config], object]], ...] = (
    ("state", lambda c: c.state),
    ("destinations", lambda c: dict(c.destinations)),
    ("dedupe", lambda c: c.dedupe),
    ("poll (other than interval)", lambda c: c.poll.model_copy(update={"interval": None})),
    ("http", lambda c: c.http),
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Candidate:
    """A freshly loaded configuration and everything wrong with it: ``problems``
    keep the running set in force; ``left_out`` are watchlists that do not load
    and are not running either (broken at start-up, or new and broken), which
    taking the candidate drops nothing of: reported, as at start-up."""

    config: cfg.Config | None
    problems: tuple[str, ...] = ()
    left_out: tuple[str, ...] = ()


def restart_only_changes(old: cfg.Config, new: cfg.Config) -> list[str]:
    """The restart-only settings that differ between ``old`` and ``new`` (pure)."""
    return [name for name, get in _RESTART_ONLY if get(old) != get(new)]


def candidate(path: Path, running: cfg.Config | None = None,
              env: Mapping[str, str] | None = None) -> Candidate:
    """Load ``path`` with its watchlists and templates; collect every problem.

    Reads the files, so the service calls it off the event loop.
    """
    from monitor.render import Renderer

    try:
        config = cfg.load(path, env)
    except ConfigError as exc:
        return Candidate(config=None, problems=tuple(str(e) for e in cfg.split_errors(exc)))
    problems, left_out = split_watchlist_errors(config.watchlist_errors, running)
    problems += Renderer(config.templates).check()
    if running is not None:
        for name in restart_only_changes(running, config):
            problems.append(f"{path}: {name} changed: restart the service to apply it")
    return Candidate(config=config, problems=tuple(problems), left_out=tuple(left_out))


def split_watchlist_errors(errors: Sequence[ConfigError], running: cfg.Config | None,
                           ) -> tuple[list[str], list[str]]:
    """(problems, left out) of a candidate's watchlist errors (pure). An error in a
    file a running watchlist came from would drop that watchlist: a problem,
    which keeps the running set. One in any other file (broken since start-up,
    or new) drops nothing that runs: left out and reported, as start-up does,
    so that it does not hold back every other change until it is mended."""
    if running is None:
        return [str(e) for e in errors], []
    in_force = {_resolved(w.path) for w in running.watchlists if w.path}
    problems: list[str] = []
    left_out: list[str] = []
    for e in errors:
        (left_out if e.path and _resolved(e.path) not in in_force else problems).append(str(e))
    return problems, left_out


def _resolved(path: str | Path) -> Path:
    return Path(path).resolve()


@dataclass(frozen=True, slots=True, kw_only=True)
class FeedChanges:
    added: tuple[Feed, ...] = ()
    removed: tuple[Feed, ...] = ()
    changed: tuple[Feed, ...] = ()  # same name, new URL or interval: the new Feed

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.changed)


def feed_changes(old: Sequence[Feed], new: Sequence[Feed]) -> FeedChanges:
    """How the feed list changed, by feed name (pure)."""
    before = {f.name: f for f in old}
    after = {f.name: f for f in new}
    return FeedChanges(
        added=tuple(f for n, f in after.items() if n not in before),
        removed=tuple(f for n, f in before.items() if n not in after),
        changed=tuple(f for n, f in after.items() if n in before and before[n] != f),
    )


# ------------------------------------------------------------------ watching files


def watched(config: cfg.Config) -> tuple[frozenset[Path], frozenset[Path]]:
    """(folders to watch, files that matter in them) for ``config``.

    Folders rather than files: editors and ``git checkout`` replace a file by
    renaming a new one over it, which a watch on the old file would miss.
    """
    files = {config.path.resolve()}
    files |= {Path(w.path).resolve() for w in config.watchlists if w.path}
    files |= {Path(str(e.path)).resolve() for e in config.watchlist_errors if e.path}
    folders = {f.parent for f in files}
    folders.add(config.templates.resolve())
    return frozenset(f for f in folders if f.is_dir()), frozenset(files)


def relevant(path: Path, folders: frozenset[Path], files: frozenset[Path],
             templates: Path) -> bool:
    """Whether a change to ``path`` can change the configuration (pure).

    A new ``*.yaml`` in a watchlist folder is a new watchlist; the state
    database beside the config is not interesting.
    """
    if path in files:
        return True
    if path.name.startswith("."):  # an editor's lock or swap file; not loaded either
        return False
    if path.parent == templates:
        return path.name.endswith(".j2")
    return path.parent in folders and path.suffix in (".yaml", ".yml")


async def changes(current: Callable[[], cfg.Config], *,
                  debounce_ms: int = 300) -> AsyncIterator[set[Path]]:
    """Yield the relevant paths each time the files behind ``current()`` change.

    Re-reads ``current()`` after each change, so a reload that adds a watchlist
    folder or moves the templates is watched from then on.
    """
    import watchfiles

    while True:
        config = current()
        folders, files = watched(config)
        templates = config.templates.resolve()
        if not folders:
            return
        async for batch in watchfiles.awatch(*folders, recursive=False, debounce=debounce_ms,
                                             step=50):
            hits = {p for _, raw in batch
                    if relevant(p := Path(raw), folders, files, templates)}
            if hits:
                yield hits
            if watched(current()) != (folders, files):
                break  # the set of files changed with the reload: watch the new one
