"""The shipped unit and example config: they verify, are hardened, and start together."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from tools import need

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "deploy" / "news-monitor.service"
EXAMPLE = ROOT / "deploy" / "monitor.example.yaml"
INSTALLED = "/opt/news-monitor/venv/bin/news-monitor"

needs_analyze = need("systemd-analyze", "systemd")


@needs_analyze
def test_unit_verifies_apart_from_the_installed_binary(tmp_path: Path) -> None:
    unit = tmp_path / "news-monitor.service"
    here = Path(sys.executable).parent / "news-monitor"
    assert here.exists()
    unit.write_text(UNIT.read_text().replace(INSTALLED, str(here)))
    r = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stderr.strip() == "", r.stderr


@needs_analyze
def test_unit_exposure_is_at_most_1_5() -> None:
    r = subprocess.run(["systemd-analyze", "security", "--offline=true", str(UNIT)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    found = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", r.stdout)
    assert found, r.stdout
    assert float(found.group(1)) <= 1.5, r.stdout


def test_unit_is_type_notify_with_watchdog_reload_and_optional_credentials() -> None:
    lines = UNIT.read_text().splitlines()
    assert "Type=notify" in lines
    assert any(ln.startswith("WatchdogSec=") for ln in lines)
    assert "ExecReload=/bin/kill -HUP $MAINPID" in lines
    creds = [ln for ln in lines if ln.startswith("LoadCredential=")]
    assert creds and all(ln.startswith("LoadCredential=-") for ln in creds)
    # every credential the example config reads is one the unit loads
    used = set(re.findall(r"\$\{CREDENTIALS_DIRECTORY\}/([\w-]+)", EXAMPLE.read_text()))
    loaded = {ln.removeprefix("LoadCredential=-").split(":", 1)[0] for ln in creds}
    assert used and used <= loaded


def _installed_example(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """The example config as the README installs it, with /etc and /var/lib under
    ``tmp_path`` and the credentials systemd would hand over."""
    etc, var, creds = tmp_path / "etc", tmp_path / "var", tmp_path / "credentials"
    (etc / "watchlists").mkdir(parents=True)
    var.mkdir()
    creds.mkdir()
    shutil.copy(ROOT / "watchlists" / "pandemic.yaml", etc / "watchlists")
    (creds / "slack-token").write_text("xoxb-not-a-real-token\n")
    (creds / "smtp-password").write_text("not-a-real-password\n")
    text = (EXAMPLE.read_text().replace("/etc/news-monitor", str(etc))
            .replace("/var/lib/news-monitor", str(var)))
    config = etc / "monitor.yaml"
    config.write_text(text)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "NEWS_MONITOR"))}
    env["CREDENTIALS_DIRECTORY"] = str(creds)
    return config, env


def test_example_config_checks_with_the_units_credentials(tmp_path: Path) -> None:
    config, env = _installed_example(tmp_path)
    r = subprocess.run([sys.executable, "-m", "monitor.cli", "check", "--config", str(config)],
                       capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "ok: 3 feeds" in r.stdout
    assert "not-a-real" not in r.stdout + r.stderr


def test_example_config_without_the_email_destination_needs_no_smtp_password(
        tmp_path: Path) -> None:
    config, env = _installed_example(tmp_path)
    (Path(env["CREDENTIALS_DIRECTORY"]) / "smtp-password").unlink()
    text = config.read_text()
    start = text.index("  desk-mail:")
    end = text.index("  console:")
    config.write_text(text[:start] + text[end:])
    r = subprocess.run([sys.executable, "-m", "monitor.cli", "check", "--config", str(config)],
                       capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 0, r.stderr
