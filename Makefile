# `make demo` and `make test` work on a fresh machine with Python 3.11+: each creates (or
# reuses) .venv and installs the project into it first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test lint bench validate mutation clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required")'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

demo: $(STAMP)
	$(PY) -m engine demo

test: $(STAMP)
	$(PY) -m pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check engine sandbox tests benchmarks

validate: $(STAMP)
	$(PY) -m engine validate

# Not part of `make test`: each prints its result beside its floor (benchmarks/README.md).
bench: $(STAMP)
	$(PY) benchmarks/many_connections.py
	$(PY) benchmarks/one_connection.py
	$(PY) benchmarks/one_connection.py --contacts 1000000 --rounds 1 --no-floor
	$(PY) benchmarks/sync_contacts.py

# Mutation testing of engine/{transport,auth,oauth,ratelimit,paginate,mapping,convert}.py
# ([tool.mutmut] in pyproject.toml; about 40 minutes on 2 cores). Not part of `make test` nor CI.
# A fresh run each time; `.venv/bin/mutmut browse` shows the mutants afterwards.
$(VENV)/.mutation-stamp: $(STAMP)
	$(PY) -m pip install --quiet -e '.[dev,mutation]'
	@touch $@

mutation: $(VENV)/.mutation-stamp
	rm -rf mutants
	$(VENV)/bin/mutmut run
	@echo "Mutants not killed:"
	@$(VENV)/bin/mutmut results

clean:
	rm -rf out .pytest_cache mutants
