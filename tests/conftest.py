"""Shared fixtures: real local servers and a scratch state folder.

Each fixture is function-scoped and starts/stops its own server, so tests never
see each other's messages or faults. Keep this file to fixtures only; helpers
live in ``tests/servers.py`` (servers) or next to the tests that use them.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from servers import FeedServer, SlackServer, SMTPServer

# --------------------------------------------------------------------------- servers


@pytest.fixture
def feed_server() -> Iterator[FeedServer]:
    with FeedServer() as server:
        yield server


@pytest.fixture
def slack_server() -> Iterator[SlackServer]:
    with SlackServer() as server:
        yield server


@pytest.fixture
def smtp_server() -> Iterator[SMTPServer]:
    """Plain SMTP, no AUTH. Tests that need TLS or AUTH start their own SMTPServer(...)."""
    with SMTPServer() as server:
        yield server


# --------------------------------------------------------------------------- state


@pytest.fixture
def tmp_state(tmp_path: Path) -> Path:
    """An empty folder for a run's state (database, logs), removed by pytest."""
    state = tmp_path / "state"
    state.mkdir()
    return state
