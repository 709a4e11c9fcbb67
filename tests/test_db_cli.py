"""``news-monitor db status | upgrade | migrate``, run as a user would."""

from __future__ import annotations

import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from stores import pg_schema_url

from monitor.store import PollRecord, StoredEntry, open_store
from monitor.store.sql import SCHEMA_VERSION
from monitor.types import Entry

DATA = Path(__file__).parent / "data"
NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def db(tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "monitor.cli", "db", *args],
                          capture_output=True, text=True, timeout=60, cwd=tmp)


def test_status_then_upgrade_an_old_file(tmp_path: Path) -> None:
    path = tmp_path / "monitor.db"
    shutil.copy(DATA / "state-schema4-no-maybe-sent.db", path)
    url = f"sqlite:///{path}"
    r = db(tmp_path, "status", "--state", url)
    assert r.returncode == 0, r.stderr
    steps = ", ".join(map(str, range(5, SCHEMA_VERSION + 1)))
    assert f"schema: 4; pending steps: {steps} " in r.stdout
    r = db(tmp_path, "status", "--state", url)  # looking changed nothing
    assert "schema: 4;" in r.stdout
    r = db(tmp_path, "upgrade", "--state", url)
    assert r.returncode == 0 and f"schema 4 -> {SCHEMA_VERSION}" in r.stdout, r.stderr
    r = db(tmp_path, "status", "--state", url)
    assert f"schema: {SCHEMA_VERSION} (up to date)" in r.stdout
    assert "up to date" in db(tmp_path, "upgrade", "--state", url).stdout


@pytest.mark.parametrize("args", [("status", "--state"), ("migrate", "--to", "sqlite:///x.db",
                                                          "--from")])
def test_a_mistyped_path_to_read_is_an_error_not_a_new_store(tmp_path: Path,
                                                             args: tuple[str, ...]) -> None:
    """db status and db migrate --from made the directory and an empty database
    there, and status then advised `db upgrade`, which would make it a store."""
    typo = tmp_path / "typo" / "monitor.db"
    r = db(tmp_path, *args, f"sqlite:///{typo}")
    assert r.returncode == 1
    assert f"no such store: {typo} (nothing was created)" in r.stderr
    assert not typo.parent.exists()


def test_migrate_sqlite_to_postgresql_keeps_everything(tmp_path: Path) -> None:
    path = tmp_path / "monitor.db"
    shutil.copy(DATA / "state-schema4.db", path)
    src = open_store(f"sqlite:///{path}")
    src.split(src.find_entry("k1"), "s2", [])  # type: ignore[arg-type]
    before = (src.feed_states(), src.pending("slack"), src.get_meta("split"))
    src.close()
    with pg_schema_url() as url:
        # The password is not checked (trust), and must not be printed.
        secret = url.replace("postgres@", "postgres:hunter2-secret@", 1)
        r = db(tmp_path, "migrate", "--from", f"sqlite:///{path}", "--to", secret)
        assert r.returncode == 0, r.stderr
        assert "hunter2-secret" not in r.stdout + r.stderr
        assert "feeds 2, entries 1" in r.stdout and "alerts 1" in r.stdout
        dst = open_store(url)
        try:
            assert (dst.feed_states(), dst.pending("slack"), dst.get_meta("split")) == before
            assert dst.story("s2") is not None
            # New rows continue after the copied keys: the outbox order holds.
            e = Entry(feed="cnn", key="n", guid="n", link="https://cnn.example/n",
                      canonical_url="https://cnn.example/n", title="New", summary="",
                      published=NOW)
            dst.ingest(PollRecord(feed="cnn", at=NOW),
                       [StoredEntry(entry=e, story_id="s3", seen_at=NOW)], [])
            assert [se.entry.key for se in dst.entries_since(NOW)] == ["n"]
        finally:
            dst.close()
        # Into a store that has rows: refused, nothing copied twice.
        r = db(tmp_path, "migrate", "--from", f"sqlite:///{path}", "--to", url)
        assert r.returncode == 1 and "not empty" in r.stderr
