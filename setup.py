"""The C cores (monitor/_matchcore.c: the matcher's per-entry half; monitor/_storycore.c:
the story index's feature table, candidate loop and an entry's words and vector); everything
else is in pyproject.toml.

The extension is optional: where it cannot be compiled (no C compiler or no
Python headers), the install goes on with a warning and news-monitor matches
and groups on its pure-Python paths; the matcher logs ``matcher_pure_python``
when it starts.
"""

from setuptools import Extension, setup

FLAGS = ["-O2", "-std=c11", "-Wall", "-Wextra", "-Wno-unused-parameter"]

setup(
    ext_modules=[
        Extension("monitor._matchcore", sources=["monitor/_matchcore.c"],
                  extra_compile_args=FLAGS, optional=True),
        Extension("monitor._storycore", sources=["monitor/_storycore.c"], libraries=["m"],
                  extra_compile_args=FLAGS, optional=True),
    ]
)
