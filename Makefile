# The template's own tooling. `make test` is the one test command (both tiers); CI runs it.
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: venv test test-fast demo bench lint clean

$(PY): requirements-dev.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -r requirements-dev.txt
	touch $(PY)

venv: $(PY)

test: $(PY)  ## every test, fast and slow tier
	$(PY) -m pytest -v -n auto --dist loadfile --no-loadscope-reorder --durations=30

test-fast: $(PY)  ## the fast tier: render, hooks, files (about 4 minutes on 2 cores)
	$(PY) -m pytest -m "not slow"

demo: $(PY)  ## generate a project into a scratch folder and run a full local release
	bash bench/demo.sh

bench: $(PY)  ## benchmark scripts; figures go to bench/results/
	$(PY) bench/bench_render.py
	$(PY) bench/bench_release.py
	$(PY) bench/bench_serving.py
	$(PY) bench/bench_flat_trees.py
	$(PY) bench/bench_data.py
	$(PY) bench/bench_load.py
	$(PY) bench/bench_ab.py
	$(PY) bench/bench_experiments.py
	$(PY) bench/bench_workers.py
	$(PY) bench/bench_test_suite.py

lint: $(PY)
	$(PY) -m ruff check hooks tests bench local_extensions.py

clean:
	rm -rf $(VENV) .pytest_cache
