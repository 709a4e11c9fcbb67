"""Run pytest with the C cores loaded from given files (make asan).

    python tests/run_with_core.py PATH/_matchcore.so PATH/_storycore.so [pytest args...]

The editable install's import hook always finds the extensions in monitor/;
putting the modules in sys.modules first makes ``from monitor import
_matchcore`` (and ``_storycore``) take these builds instead, e.g. ones
compiled with sanitizers.
"""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType

import pytest


def load(name: str, path: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"monitor.{name}", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"{path}: not an extension module")
    core = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(core)
    sys.modules[f"monitor.{name}"] = core
    print(f"monitor.{name} from {path}")  # noqa: T201
    return core


def main(match_path: str, story_path: str, *args: str) -> int:
    match_core = load("_matchcore", match_path)
    story_core = load("_storycore", story_path)
    import monitor.dedupe
    import monitor.match

    assert monitor.match._matchcore is match_core, "monitor.match did not take the given core"
    assert monitor.dedupe._storycore is story_core, "monitor.dedupe did not take the given core"
    return int(pytest.main(list(args)))


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
