"""`make demo` shows real alerts within seconds, with no network and no Slack token."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_demo_shows_one_alert_per_story(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, str(ROOT / "demo" / "run.py"), "--gap", "1.5",
                        "--dir", str(tmp_path)],
                       capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    # the alerts are the show: routine log lines stay out of the way
    assert "feed.polled" not in r.stderr, r.stderr
    # and the state is left where `stories --config` reads it
    assert f"--config {tmp_path / 'monitor.yaml'}" in r.stdout
    s = subprocess.run([sys.executable, "-m", "monitor.cli", "stories", "--all-sources",
                        "--config", str(tmp_path / "monitor.yaml")],
                       capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert s.returncode == 0, s.stderr
    assert "[2 from 2 sources]" in s.stdout, s.stdout
    out = r.stdout
    # The console destination prints "[watchlist] title"; the North Korea story is
    # published by two outlets but alerts once.
    assert out.count("[North Korean troops in Ukraine]") == 1, out
    assert out.count("[Climate summit]") == 1, out
    assert out.count("[Pandemic treatments and variants]") == 1, out
    assert "Traceback" not in r.stderr, r.stderr
