# One shared virtual environment for every target; each target creates it on a fresh machine.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.dlstructured-installed
PYTEST := $(PY) -m pytest -p no:cacheprovider

.PHONY: install test test-tensorflow test-jax fuzz demo docs examples lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,docs,all]'
	touch $(STAMP)

install: $(STAMP)

test: test-tensorflow test-jax

# Tests and the docstring examples, on each backend.
test-tensorflow: $(STAMP)
	KERAS_BACKEND=tensorflow $(PYTEST) -m "not slow" -q --doctest-modules tests src/dlstructured

test-jax: $(STAMP)
	KERAS_BACKEND=jax $(PYTEST) -m "not slow" -q --doctest-modules tests src/dlstructured

fuzz: $(STAMP)
	KERAS_BACKEND=jax HYPOTHESIS_PROFILE=fuzz $(PYTEST) -m "slow or fuzz" -q --hypothesis-show-statistics

demo: $(STAMP)
	$(VENV)/bin/dlstructured demo --out runs/demo

# Benchmarks against the course's plain-Keras code (minutes; not a test). Uses the course CSVs
# when ../shared/data exists, synthetic data of the same shapes otherwise. Writes runs/.
BENCH_DATA := $(wildcard ../shared/data)
bench: $(STAMP)
	$(PY) benchmarks/run.py $(if $(BENCH_DATA),--data-dir $(BENCH_DATA)) --memory \
		--out runs/benchmark-results.json --markdown runs/benchmark-results.md

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks examples

clean:
	rm -rf $(VENV) site runs .pytest_cache .hypothesis

docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict

# Runs every lesson's example on the bundled data and refreshes the pictures in docs/images.
examples: $(STAMP)
	for script in examples/[0-9][0-9]_*.py; do \
		DLSTRUCTURED_EXAMPLE_FIGURES=docs/images $(PY) $$script || exit 1; \
	done
