"""Opening a fresh state store per test, on SQLite and on PostgreSQL.

PostgreSQL tests each get a schema of their own (dropped afterwards) in the
database named by ``$NEWS_MONITOR_TEST_PG`` (``make test`` sets it to the
machine's server); without that variable and outside CI they are skipped with
a reason, in CI (``CI=true``) a missing server is a failure.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

import pytest

from monitor.store import SqlStore, open_store

DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/test"


def pg_url() -> str | None:
    url = os.environ.get("NEWS_MONITOR_TEST_PG")
    if url:
        return url
    if os.environ.get("CI"):
        return DEFAULT_PG
    return None


@contextmanager
def pg_schema_url() -> Iterator[str]:
    """A PostgreSQL URL whose search_path is a brand-new schema."""
    import psycopg

    url = pg_url()
    if url is None:
        pytest.skip("set NEWS_MONITOR_TEST_PG (make test does) to run the PostgreSQL backend")
    schema = "t_" + uuid.uuid4().hex[:12]
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in url else "?"
    try:
        yield f"{url}{sep}options={quote(f'-csearch_path={schema}')}"
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


@contextmanager
def state_url(backend: str, tmp_path: Path) -> Iterator[str]:
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path}/state/monitor.db"
    else:
        with pg_schema_url() as url:
            yield url


@contextmanager
def fresh_store(backend: str, tmp_path: Path) -> Iterator[SqlStore]:
    with state_url(backend, tmp_path) as url:
        store = open_store(url)
        try:
            yield store
        finally:
            store.close()


class PrivateServer:
    """A PostgreSQL server of the test's own (initdb in a temp dir, a free port on
    127.0.0.1), for what the shared one must not see: being stopped and restarted.

    PostgreSQL refuses to run as root, so as root it runs as user ``postgres``
    (``runuser``). Skips, saying why, when initdb/pg_ctl are not installed.
    """

    def __init__(self) -> None:
        import shutil
        import socket
        import tempfile

        missing = [b for b in ("initdb", "pg_ctl") if shutil.which(b) is None]
        if missing:
            pytest.skip(f"{' and '.join(missing)} not found: the restart test needs a "
                        "PostgreSQL server of its own (apt-get install postgresql)")
        self._as: list[str] = []
        if os.geteuid() == 0:
            if shutil.which("runuser") is None:
                pytest.skip("running as root without runuser: PostgreSQL refuses root")
            self._as = ["runuser", "-u", "postgres", "--"]
        self.dir = Path(tempfile.mkdtemp(prefix="nm-pg-"))
        if self._as:
            import pwd

            pw = pwd.getpwnam("postgres")
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self._pg(["initdb", "-D", str(self.dir / "data"), "-U", "postgres", "-A", "trust",
                  "--no-sync", "-E", "UTF8"])

    def _pg(self, cmd: list[str]) -> None:
        import subprocess

        r = subprocess.run([*self._as, *cmd], capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, f"{cmd[0]} failed: {r.stdout}{r.stderr}"

    def start(self) -> None:
        self._pg(["pg_ctl", "-D", str(self.dir / "data"), "-l", str(self.dir / "log"), "-w",
                  "-o", f"-p {self.port} -h 127.0.0.1 -k {self.dir} -F", "start"])

    def stop(self) -> None:
        self._pg(["pg_ctl", "-D", str(self.dir / "data"), "-m", "fast", "-w", "stop"])

    def close(self) -> None:
        import shutil
        import subprocess

        subprocess.run([*self._as, "pg_ctl", "-D", str(self.dir / "data"), "-m", "immediate",
                        "-w", "stop"], capture_output=True, timeout=60)
        shutil.rmtree(self.dir, ignore_errors=True)


@contextmanager
def private_server() -> Iterator[PrivateServer]:
    server = PrivateServer()
    try:
        server.start()
        yield server
    finally:
        server.close()
