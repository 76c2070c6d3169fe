# Two commands are all the set-up on a fresh machine: `make demo` and `make test`.
# Both create (or reuse) .venv and install what is missing; torch/torchvision are pinned
# (requirements.txt) because those exact wheels install from the local cache.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.visrep-installed

.PHONY: install demo test test-all bench-data clean

$(STAMP): pyproject.toml requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check "setuptools>=68" -r requirements.txt
	$(PY) -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/visrep demo

test: $(STAMP)
	$(PY) -m pytest

test-all: $(STAMP)
	$(PY) -m pytest -m ""

bench-data: $(STAMP)
	$(PY) benchmarks/bench_data.py

clean:
	rm -rf runs .pytest_cache
