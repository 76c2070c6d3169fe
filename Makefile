# Two commands are all the set-up on a fresh machine: `make demo` and `make test`.
# Both create (or reuse) .venv and install what is missing; torch/torchvision are pinned
# (requirements.txt) because those exact wheels install from the local cache.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.visrep-installed

.PHONY: install demo test test-all bench-data bench-peers clean

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

# the peer libraries (pyproject's bench extra) with --no-deps, so that pip cannot touch the pinned torch,
# then one peer comparison end to end on the embedded digits (a few minutes): a check of the harness
BENCH_PEERS := torchgan==0.1.0 denoising-diffusion-pytorch==2.3.4 ema-pytorch einops accelerate pytorch-fid
bench-peers: $(STAMP)
	$(PY) -m pip install -q --disable-pip-version-check --no-deps $(BENCH_PEERS)
	$(PY) benchmarks/peers_smoke.py

clean:
	rm -rf runs .pytest_cache
