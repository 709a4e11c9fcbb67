# news-monitor: the commands a newcomer needs.
#   make run            set up .venv and run the monitor with ./monitor.yaml (console alerts)
#   make test           set up .venv with the test extra (no PyTorch) and run the whole suite, then
#                       make asan; the tests marked `semantic` (the real MiniLM model) are skipped
#   make test-semantic  set up .venv-semantic with the semantic extra (PyTorch, about 1.5 GB) and
#                       run the tests marked `semantic`, then make lint-semantic
#   make demo           serve the bundled sample feeds on 127.0.0.1 and watch alerts arrive
#   make check          validate monitor.yaml, the watchlists and the templates
#   make bench          run the benchmarks in bench/ (in .venv-semantic: bench/dedupe.py's
#                       semantic rows need the model; both read ../shared/data/)
#   make lint           ruff and mypy --strict, in .venv (without the semantic extra)
#   make lint-semantic  mypy --strict again in .venv-semantic, with the extra installed
#   make asan           the C cores (matcher, story index) under AddressSanitizer and UBSan
#   make test-tools     systemd-analyze and chromium for the tests (apt, where root; make test runs it)
#   make bytecode       compile monitor/ ahead (run, check, demo and test do it first)
# Two virtualenvs, so that the default one stays small: .venv (the package with
# its test and dev extras) and .venv-semantic (the same plus the semantic extra).

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
SEMANTIC_VENV ?= .venv-semantic
SBIN   := $(SEMANTIC_VENV)/bin
PG_URL ?= postgresql://postgres@127.0.0.1:5432/test

.PHONY: run test test-semantic demo check bench lint lint-semantic asan postgres test-tools \
	bytecode clean

%/bin/python:
	$(PYTHON) -m venv $*
	$*/bin/pip install -q --upgrade pip

# setup.py builds the matcher's C core: a change to it reinstalls.
$(VENV)/.installed: $(BIN)/python pyproject.toml setup.py monitor/_matchcore.c monitor/_storycore.c
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.installed-test: $(BIN)/python pyproject.toml setup.py monitor/_matchcore.c monitor/_storycore.c
	$(BIN)/pip install -q -e '.[test]'
	touch $@ $(VENV)/.installed

$(VENV)/.installed-dev: $(VENV)/.installed-test
	$(BIN)/pip install -q -e '.[test,dev]'
	touch $@

# TORCH pins PyTorch first: on our machines 2.13.0 is a CPU build on local disk,
# where an unpinned torch would download a multi-GB CUDA build.
TORCH ?= torch==2.13.0

$(SEMANTIC_VENV)/.installed: $(SBIN)/python pyproject.toml setup.py monitor/_matchcore.c monitor/_storycore.c
	$(SBIN)/pip install -q '$(TORCH)'
	$(SBIN)/pip install -q -e '.[test,semantic,dev]'
	touch $@

# The package's bytecode, written ahead: an editable install has none, and where
# Python does not write it as it imports (PYTHONDONTWRITEBYTECODE, common in
# containers and set on our machines) every start compiled the package again,
# about 0.4 s of each `news-monitor` process. A no-op when it is current.
bytecode: $(VENV)/.installed
	@$(BIN)/python -m compileall -q monitor

run: $(VENV)/.installed bytecode
	$(BIN)/news-monitor run --config monitor.yaml

check: $(VENV)/.installed bytecode
	$(BIN)/news-monitor check --config monitor.yaml

demo: $(VENV)/.installed bytecode
	$(BIN)/python demo/run.py

# PostgreSQL backs the store tests' second backend. The machine normally runs it;
# start the local cluster if it is installed but down.
postgres:
	@pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null || \
	  (command -v pg_ctlcluster >/dev/null && \
	   pg_ctlcluster --skip-systemctl-redirect $$(ls /etc/postgresql | head -n1) main start && \
	   sleep 2) || echo "PostgreSQL is not available: the PostgreSQL store tests will say so"

# Tools the tests drive: systemd-analyze checks the shipped unit (Debian package
# systemd), headless Chromium loads the status page (package chromium). Installed
# with apt where we are root (CI); elsewhere their tests are skipped, saying why.
TEST_TOOLS := systemd-analyze:systemd chromium:chromium
test-tools:
	@missing=""; for t in $(TEST_TOOLS); do \
	  command -v $${t%%:*} >/dev/null || missing="$$missing $${t#*:}"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing$$missing for the tests"; \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing \
	      || (apt-get update -q && DEBIAN_FRONTEND=noninteractive \
	          apt-get install -y -q --no-install-recommends $$missing); \
	  else echo "missing$$missing (apt-get install$$missing): their tests will be skipped"; fi; \
	fi

test: $(VENV)/.installed-test bytecode postgres test-tools
	NEWS_MONITOR_TEST_PG=$(PG_URL) $(BIN)/python -m pytest -q
	$(MAKE) --no-print-directory asan

# Only the tests that need the real model: make test ran everything else.
test-semantic: $(SEMANTIC_VENV)/.installed
	$(SBIN)/python -m pytest -q -m semantic
	$(MAKE) --no-print-directory lint-semantic

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check monitor tests bench demo
	$(BIN)/mypy

# Its own cache: the two virtualenvs hold different packages.
lint-semantic: $(SEMANTIC_VENV)/.installed
	$(SBIN)/mypy --cache-dir $(SEMANTIC_VENV)/.mypy_cache

bench: $(SEMANTIC_VENV)/.installed
	$(SBIN)/python bench/match.py
	$(SBIN)/python bench/dedupe.py

# The C core (monitor/_matchcore.c: the matcher, dedupe's candidate loop) built with AddressSanitizer and UBSan, and the tests
# that drive it run on that build: tests/run_with_core.py loads it in place of
# the installed one, gcc's libasan is preloaded (the interpreter has none),
# PYTHONMALLOC=malloc lets ASan see every buffer (pymalloc's pools hide them),
# and -s lets a report through before the process dies.
ASAN_CORES := build/asan/_matchcore.so build/asan/_storycore.so
ASAN_CC = gcc -O1 -g -fsanitize=address,undefined -fno-sanitize-recover=undefined \
	  -fno-omit-frame-pointer -std=c11 -fPIC -shared \
	  -I$$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
asan: $(VENV)/.installed-test
	mkdir -p build/asan
	$(ASAN_CC) monitor/_matchcore.c -o build/asan/_matchcore.so
	$(ASAN_CC) monitor/_storycore.c -o build/asan/_storycore.so
	PYTHONMALLOC=malloc ASAN_OPTIONS=detect_leaks=0 \
	LD_PRELOAD="$$(gcc -print-file-name=libasan.so) $$(gcc -print-file-name=libubsan.so)" \
	  $(BIN)/python tests/run_with_core.py $(ASAN_CORES) -q -s -p no:cacheprovider \
	  tests/test_match.py tests/test_text.py::test_c_tokens_are_token_string \
	  tests/test_text.py::test_news_punctuation_and_accents_fold_in_c \
	  tests/test_dedupe.py::test_c_scores_are_the_python_ones_to_the_bit \
	  tests/test_dedupe.py::test_c_and_python_tables_cluster_alike \
	  tests/test_dedupe.py::test_c_accumulate_and_withdraw_are_the_python_ones_to_the_bit \
	  tests/test_dedupe.py::test_c_table_refuses_what_it_cannot_read \
	  tests/test_dedupe.py::test_c_table_tells_apart_strings_that_hash_alike \
	  tests/test_dedupe.py::test_c_entry_side_is_the_python_one_to_the_bit \
	  tests/test_dedupe.py::test_c_entry_side_refuses_what_it_cannot_read \
	  tests/test_dedupe.py::test_c_words_are_the_python_ones \
	  tests/test_dedupe.py::test_c_words_of_ascii_text_are_the_python_ones \
	  tests/test_dedupe.py::test_c_without_is_the_python_one_to_the_bit \
	  tests/test_dedupe.py::test_c_subject_pairs_are_the_python_ones \
	  tests/test_dedupe.py::test_a_storys_subject_pairs_are_the_pairs_among_its_features \
	  tests/test_dedupe.py::test_words_are_the_content_words_of_tokenize \
	  tests/test_dedupe.py::test_c_and_python_paths_decide_alike \
	  tests/test_dedupe.py::test_expiry_leaves_what_adding_only_the_survivors_gives

clean:
	rm -rf $(VENV) $(SEMANTIC_VENV) state .pytest_cache .hypothesis
	find monitor -name __pycache__ -prune -exec rm -rf {} +
