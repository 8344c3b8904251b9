# One-command set-up and run targets. Every target creates .venv when missing.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# llama-cpp-python compiles llama.cpp from source (about 10 min on 2 cores, once).
export CMAKE_BUILD_PARALLEL_LEVEL ?= 2
CORES ?= 2

.PHONY: venv test test-fast run bench montecarlo lint clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml $(BIN)/python
	$(BIN)/python -m pip install -e '.[test,workflow,local]'
	touch $@

venv: $(VENV)/.installed

## make test: set up .venv when missing and run the whole test suite (what CI runs)
test: venv
	$(BIN)/python -m pytest -q tests

## make test-fast: skip the slow Monte-Carlo and end-to-end tests (for local iteration only)
test-fast: venv
	$(BIN)/python -m pytest -q -m "not slow" tests

## make run: the default workflow end to end on the embedded local model (no keys)
run: venv
	PATH=$(abspath $(BIN)):$$PATH $(BIN)/snakemake --profile profiles/local --cores $(CORES)
	@echo ""
	@echo "Results in $(abspath results)/ (layout: docs/workflow.md)"
	@echo "  sweep summary: results/summary.csv  results/summary.html"
	@for f in results/*/coverage_*/estimates.json; do echo "  estimates:     $$f"; done
	@for f in results/*/coverage_*/plots/diagnostics_dashboard.html; do [ -e "$$f" ] && echo "  dashboard:     $$f"; done; true
	@echo "  report:        PATH=$(BIN):\$$PATH $(BIN)/snakemake --report report.html"

## make bench: speed and scale benchmarks; prints a table, writes benchmarks/results/*.json
bench: venv
	$(BIN)/python -m benchmarks.run

## make montecarlo: the Monte-Carlo table of docs/statistics.md (the seeds tests/stats checks; ~10 min)
montecarlo: venv
	$(BIN)/python -m benchmarks.monte_carlo

lint: venv
	$(BIN)/snakemake --lint

clean:
	rm -rf results logs .snakemake benchmarks/results/tmp
