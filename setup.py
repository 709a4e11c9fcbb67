"""The C core (monitor/_matchcore.c: the matcher's per-entry half, dedupe's candidate
loop); everything else is in pyproject.toml.

The extension is optional: where it cannot be compiled (no C compiler or no
Python headers), the install goes on with a warning and news-monitor matches
on its pure-Python paths; the matcher logs ``matcher_pure_python`` when it starts.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "monitor._matchcore",
            sources=["monitor/_matchcore.c"],
            extra_compile_args=["-O2", "-std=c11", "-Wall", "-Wextra", "-Wno-unused-parameter"],
            optional=True,
        )
    ]
)
