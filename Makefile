# robodream: `make demo` runs the pipeline on the quickstart config, `make test` runs the test suite.
# Both create .venv when it is missing, installing torch==2.13.0 (the CPU build) first so that the
# package's own `torch` requirement never pulls a CUDA build.

PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.robodream-installed
PIP    := $(BIN)/python -m pip

.PHONY: demo test browser bench bench-policy install clean

$(STAMP): pyproject.toml setup.py
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet torch==2.13.0
	$(PIP) install --quiet -e '.[dev,ros,lerobot,ray]'
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/robodream run configs/pipeline/quickstart.yaml

test: $(STAMP) browser
	$(BIN)/python -m pytest

# The report's browser test uses headless Chromium from Debian's packages. Best effort: without root or apt
# the test is skipped with the reason (pytest -ra lists it), everything else still runs.
browser:
	@command -v chromium-headless-shell >/dev/null || command -v chromium >/dev/null || \
	  { (apt-get update -qq && apt-get install -y -qq chromium-headless-shell) >/dev/null 2>&1 || \
	    echo "note: could not install chromium-headless-shell; the browser test will be skipped"; }

bench: $(STAMP)
	$(BIN)/python benchmarks/collect.py
	$(BIN)/python benchmarks/loader.py
	$(BIN)/python benchmarks/eval_throughput.py

# Policy quality on both tasks (about 2 hours on 2 CPU cores, resumable): the default policy, BC and the diffusion
# policy against the scripted expert, the success-vs-demos curve, then training speed against the thread count.
bench-policy: $(STAMP)
	$(BIN)/python benchmarks/policy.py
	$(BIN)/python benchmarks/train_threads.py --store runs/bench/policy/data/push_cube_300.zarr

clean:
	rm -rf $(VENV) runs/quickstart .pytest_cache
