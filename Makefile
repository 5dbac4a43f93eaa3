# The two commands a new user needs: `make demo` and `make test`. Each sets up what it needs.
.PHONY: setup demo test fuzz lint typecheck bench model docs clean

VENV := .venv
PY := $(VENV)/bin/python

setup:
	@scripts/bootstrap.sh all

demo: setup
	@$(PY) -m scripts.demo

test: setup
	@$(PY) -m protocol.docs --check
	@$(VENV)/bin/ruff check .
	@$(VENV)/bin/mypy
	@$(PY) -m pytest -q

# The bad-input suite at length: thousands of generated hostile inputs per surface (minutes).
fuzz: setup
	@SOHOA_FUZZ=long $(PY) -m pytest -q -m fuzz -p no:cacheprovider

lint: setup
	@$(VENV)/bin/ruff check .
	@$(VENV)/bin/mypy

bench: setup
	@$(PY) -m benchmarks.run

model: setup
	@$(PY) -m pip install -q -e ".[train]"
	@nice $(PY) -m training.train $(if $(CORRECTIONS),--corrections $(CORRECTIONS))

docs: setup
	@$(PY) -m protocol.docs --write

clean:
	rm -rf build *.egg-info .pytest_cache .mypy_cache .ruff_cache
