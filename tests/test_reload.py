"""Live reload's pure decisions: which file changes matter, which watchlist errors
keep the running set (tables; the service's reloads are in test_lifecycle)."""

from __future__ import annotations

from pathlib import Path

import pytest

from monitor import config as cfg
from monitor.errors import ConfigError
from monitor.reload import relevant, split_watchlist_errors

FOLDERS = frozenset({Path("/etc/nm/watchlists"), Path("/etc/nm")})
FILES = frozenset({Path("/etc/nm/monitor.yaml"), Path("/etc/nm/watchlists/nk.yaml")})
TEMPLATES = Path("/etc/nm/templates")


@pytest.mark.parametrize(("path", "expected"), [
    ("/etc/nm/monitor.yaml", True),
    ("/etc/nm/watchlists/nk.yaml", True),
    ("/etc/nm/watchlists/new.yml", True),
    ("/etc/nm/templates/alert.slack.j2", True),
    ("/etc/nm/state/monitor.db", False),
    ("/etc/nm/watchlists/notes.txt", False),
    # editors' lock and swap files, macOS's copies: not loaded, so no reload
    ("/etc/nm/watchlists/.#nk.yaml", False),
    ("/etc/nm/watchlists/._nk.yaml", False),
    ("/etc/nm/templates/.alert.slack.j2.swp", False),
])
def test_relevant(path: str, expected: bool) -> None:
    assert relevant(Path(path), FOLDERS, FILES, TEMPLATES) is expected


def _running(tmp: Path) -> cfg.Config:
    (tmp / "watchlists").mkdir()
    (tmp / "watchlists" / "nk.yaml").write_text("name: NK\nall: [Korea]\nnotify: [console]\n")
    (tmp / "monitor.yaml").write_text("destinations: {console: {type: console}}\n")
    return cfg.load(tmp / "monitor.yaml", env={})


def test_errors_split_by_whether_they_drop_a_running_watchlist(tmp_path: Path) -> None:
    running = _running(tmp_path)
    wl = tmp_path / "watchlists"
    errors = [ConfigError("notify: unknown destination", path=str(wl / "nk.yaml"), line=3),
              ConfigError("needs a query", path=str(wl / "new.yaml"), line=1),
              ConfigError("cannot read: not UTF-8", path=f"{wl}/../watchlists/nk.yaml"),
              ConfigError("somewhere unknown")]
    problems, left_out = split_watchlist_errors(errors, running)
    assert problems == [f"{wl}/nk.yaml:3: notify: unknown destination",
                        f"{wl}/../watchlists/nk.yaml: cannot read: not UTF-8",
                        "somewhere unknown"]
    assert left_out == [f"{wl}/new.yaml:1: needs a query"]


def test_without_a_running_set_every_error_is_a_problem(tmp_path: Path) -> None:
    errors = [ConfigError("needs a query", path=str(tmp_path / "new.yaml"), line=1)]
    assert split_watchlist_errors(errors, None) == ([str(errors[0])], [])
