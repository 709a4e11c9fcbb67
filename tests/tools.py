"""Optional tools the tests drive (systemd-analyze, Chromium): skipped with a reason
where missing, except in CI (``CI`` set), where ``make test`` installs them and a
missing one is a failure."""

from __future__ import annotations

import os
import shutil

import pytest


def need(tool: str, package: str) -> pytest.MarkDecorator:
    missing = shutil.which(tool) is None and not os.environ.get("CI")
    return pytest.mark.skipif(
        missing, reason=f"{tool} is missing (Debian package {package}; make test installs it)")
