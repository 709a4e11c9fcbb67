# news-monitor: the commands a newcomer needs.
#   make run    set up .venv and run the monitor with ./monitor.yaml (console alerts)
#   make test   set up .venv with the test extras and run the whole suite, then make asan
#   make demo   serve the bundled sample feeds on 127.0.0.1 and watch alerts arrive
#   make check  validate monitor.yaml, the watchlists and the templates
#   make bench  run the benchmarks in bench/
#   make lint   ruff and mypy --strict
#   make asan   the C core (matcher, dedupe candidates) under AddressSanitizer and UBSan

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PG_URL ?= postgresql://postgres@127.0.0.1:5432/test

.PHONY: run test demo check bench lint asan postgres clean

$(VENV)/.installed-dev: $(VENV)/.installed-test
	$(BIN)/pip install -q -e '.[test,semantic,dev]'
	touch $@

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# setup.py builds the matcher's C core: a change to it reinstalls.
$(VENV)/.installed: $(BIN)/python pyproject.toml setup.py monitor/_matchcore.c
	$(BIN)/pip install -q -e .
	touch $@

# The tests cover the optional semantic dedupe too, so they install its extra.
# TORCH pins PyTorch first: on our machines 2.13.0 is a CPU build on local disk,
# where an unpinned torch would download a multi-GB CUDA build.
TORCH ?= torch==2.13.0

$(VENV)/.installed-test: $(BIN)/python pyproject.toml setup.py monitor/_matchcore.c
	$(BIN)/pip install -q '$(TORCH)'
	$(BIN)/pip install -q -e '.[test,semantic]'
	touch $@ $(VENV)/.installed

run: $(VENV)/.installed
	$(BIN)/news-monitor run --config monitor.yaml

check: $(VENV)/.installed
	$(BIN)/news-monitor check --config monitor.yaml

demo: $(VENV)/.installed
	$(BIN)/python demo/run.py

# PostgreSQL backs the store tests' second backend. The machine normally runs it;
# start the local cluster if it is installed but down.
postgres:
	@pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null || \
	  (command -v pg_ctlcluster >/dev/null && \
	   pg_ctlcluster --skip-systemctl-redirect $$(ls /etc/postgresql | head -n1) main start && \
	   sleep 2) || echo "PostgreSQL is not available: the PostgreSQL store tests will say so"

test: $(VENV)/.installed-test postgres
	NEWS_MONITOR_TEST_PG=$(PG_URL) $(BIN)/python -m pytest -q
	$(MAKE) --no-print-directory asan

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check monitor tests bench demo
	$(BIN)/mypy

bench: $(VENV)/.installed-test
	$(BIN)/python bench/match.py
	$(BIN)/python bench/dedupe.py

# The C core (monitor/_matchcore.c: the matcher, dedupe's candidate loop) built with AddressSanitizer and UBSan, and the tests
# that drive it run on that build: tests/run_with_core.py loads it in place of
# the installed one, gcc's libasan is preloaded (the interpreter has none),
# PYTHONMALLOC=malloc lets ASan see every buffer (pymalloc's pools hide them),
# and -s lets a report through before the process dies.
ASAN_CORE := build/asan/_matchcore.so
asan: $(VENV)/.installed-test
	mkdir -p $(dir $(ASAN_CORE))
	gcc -O1 -g -fsanitize=address,undefined -fno-sanitize-recover=undefined \
	  -fno-omit-frame-pointer -std=c11 -fPIC -shared \
	  -I$$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_paths()["include"])') \
	  monitor/_matchcore.c -o $(ASAN_CORE)
	PYTHONMALLOC=malloc ASAN_OPTIONS=detect_leaks=0 \
	LD_PRELOAD="$$(gcc -print-file-name=libasan.so) $$(gcc -print-file-name=libubsan.so)" \
	  $(BIN)/python tests/run_with_core.py $(ASAN_CORE) -q -s -p no:cacheprovider \
	  tests/test_match.py tests/test_text.py::test_c_tokens_are_token_string \
	  tests/test_text.py::test_news_punctuation_and_accents_fold_in_c \
	  "tests/test_dedupe.py::test_c_story_scores_are_the_python_ones_to_the_bit" \
	  tests/test_dedupe.py::test_c_and_python_candidate_loops_cluster_alike \
	  tests/test_dedupe.py::test_c_story_scores_refuses_bad_input

clean:
	rm -rf $(VENV) state .pytest_cache .hypothesis
