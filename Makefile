# Two commands do all the set-up on a fresh machine:
#   make demo   - builds the built-in demo dataset, scores it and opens the app
#   make test   - runs the whole test suite (what CI runs, through .ci/run)
# Both create the virtual environment in .venv when it is missing.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

PIPQ ?= -q

.PHONY: demo qt-libs test lint bench bench-peers clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "installing Image Triage and its dependencies into $(VENV) (a few minutes the first time)"
	$(PY) -m pip install $(PIPQ) --upgrade pip
	$(PY) -m pip install $(PIPQ) -e '.[dev]'
	touch $(STAMP)

# The demo checks the window's system libraries before it installs anything, and shows pip's
# progress (a first install is minutes of downloads); the tests' install stays quiet.
demo: PIPQ = --progress-bar on
demo: qt-libs $(STAMP)
	$(VENV)/bin/image-triage demo

qt-libs:
	@$(PYTHON) gui/qtlibs.py

test: $(STAMP)
	$(VENV)/bin/lint-imports
	$(VENV)/bin/ruff check scoring gui tests benchmarks
	$(VENV)/bin/mypy
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check scoring gui tests benchmarks
	$(VENV)/bin/mypy

bench: $(STAMP)
	$(PY) benchmarks/bench_scoring.py

# Against the alternatives (cleanlab, Datalab) on the same images: the peers go into a venv of
# their own under /tmp/peers, never into $(VENV)
bench-peers: $(STAMP)
	$(PY) benchmarks/bench_peers.py

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
