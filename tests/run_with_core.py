"""Run pytest with monitor._matchcore loaded from a given file (make asan).

    python tests/run_with_core.py PATH/_matchcore.so [pytest args...]

The editable install's import hook always finds the extension in monitor/;
putting the module in sys.modules first makes ``from monitor import
_matchcore`` take this build instead, e.g. one compiled with sanitizers.
"""

from __future__ import annotations

import importlib.util
import sys

import pytest


def main(path: str, *args: str) -> int:
    spec = importlib.util.spec_from_file_location("monitor._matchcore", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"{path}: not an extension module")
    core = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(core)
    sys.modules["monitor._matchcore"] = core
    import monitor.match

    assert monitor.match._matchcore is core, "monitor.match did not take the given core"
    print(f"monitor._matchcore from {path}")  # noqa: T201
    return int(pytest.main(list(args)))


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
