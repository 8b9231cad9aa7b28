# Set-up is two commands: `make demo` and `make test`. Both create .venv when missing.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.darkflow-installed
PIP    := $(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt
SHARED ?= $(firstword $(wildcard ../shared/data) $(wildcard shared/data))

.PHONY: all install demo test test-fast bench bench-physics bench-darkmachines results lint clean

all: test

$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

## The whole search end to end (`darkflow demo`): an SM mixture (8 processes, weighted by cross-section) and
## three BSM signals generated with Pythia 8, the m_eff > 200 GeV channel, five models (ConvVAE without flow,
## with planar and IAF, graph VAE with planar, the density baseline), scores, scans, one report per model and
## demo_output/COMPARISON.md. A second run reuses what exists; `make demo DEMO_FLAGS=--fresh` redoes it all.
DEMO_FLAGS ?=
demo: $(STAMP)
	$(VENV)/bin/darkflow demo --out demo_output $(DEMO_FLAGS)

## Every test, slow ones included (what CI runs).
test: $(STAMP)
	$(PY) -m pytest -q

## Quick loop while developing.
test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

## Every benchmark script (each records its figures in benchmarks/results/), then benchmarks/RESULTS.md.
bench: $(STAMP)
	$(PY) benchmarks/bench_prepare.py
	$(PY) benchmarks/bench_generate.py
	$(PY) benchmarks/bench_flows.py
	$(PY) benchmarks/bench_train.py
	$(PY) benchmarks/bench_scale.py
	$(PY) benchmarks/bench_cflow.py
	$(PY) benchmarks/bench_physics.py $(PHYSICS_FLAGS)
	$(PY) benchmarks/bench_darkmachines.py $(DM_FLAGS)
	$(PY) benchmarks/make_results.py

## The sensitivity benchmark on the four Dark Machines channels (about 2 h on 2 cores; resumable), then RESULTS.md.
DM_FLAGS ?=
bench-darkmachines: $(STAMP)
	$(PY) benchmarks/bench_darkmachines.py $(DM_FLAGS)
	$(PY) benchmarks/make_results.py

## The physics benchmark alone (about 75 min on 2 cores; resumable: rerun to continue), then RESULTS.md.
## PHYSICS_FLAGS: e.g. --jobs 2.
PHYSICS_FLAGS ?=
bench-physics: $(STAMP)
	$(PY) benchmarks/bench_physics.py $(PHYSICS_FLAGS)
	$(PY) benchmarks/make_results.py

## RESULTS.md (and the README's physics table) from whatever benchmarks/results/*.json exist.
results: $(STAMP)
	$(PY) benchmarks/make_results.py

lint: $(STAMP)
	$(VENV)/bin/ruff check .

clean:
	rm -rf demo_output .pytest_cache build *.egg-info
