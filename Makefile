# `make demo` and `make test` work on a fresh machine with Python 3.11+: each creates (or
# reuses) .venv and installs the project into it first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test lint bench validate mutation mutation-resume clean distributed services services-stop

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required")'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

demo: $(STAMP)
	$(PY) -m engine demo

# One pytest worker per core (pytest-xdist): most of the suite's time is real processes and
# real waits, and CI has 10 minutes. `$(PY) -m pytest tests/test_x.py` runs one file serially.
test: $(STAMP)
	$(PY) -m pytest -n auto --dist worksteal

lint: $(STAMP)
	$(VENV)/bin/ruff check engine sandbox tests benchmarks scripts

validate: $(STAMP)
	$(PY) -m engine validate

# Not part of `make test`: each prints its result beside its floor (benchmarks/README.md).
bench: $(STAMP)
	$(PY) benchmarks/many_connections.py
	$(PY) benchmarks/one_connection.py
	$(PY) benchmarks/one_connection.py --map-processes 1
	$(PY) benchmarks/one_connection.py --contacts 1000000 --rounds 1 --no-floor
	$(PY) benchmarks/sync_contacts.py

# The distributed mode (docs/deployment.md): the `distributed` extra (Celery, Redis, psycopg,
# cryptography, the DuckLake and PostgreSQL extensions of DuckDB), then PostgreSQL and Redis from
# Debian's packages, started as local processes of this checkout (scripts/services.sh; data in
# out/services/, loopback ports). `eval "$$(scripts/services.sh env)"` points a shell at them.
$(VENV)/.distributed-stamp: $(STAMP)
	$(PY) -m pip install --quiet -e '.[dev,distributed]'
	@touch $@

distributed: $(VENV)/.distributed-stamp services

services:
	scripts/services.sh install
	scripts/services.sh start

services-stop:
	scripts/services.sh stop

# Mutation testing of engine/{transport,auth,authkinds,oauth,ratelimit/local,paginate,mapping,convert}.py
# ([tool.mutmut] in pyproject.toml; hours on 2 busy cores). Not part of `make test` nor CI.
# `mutation` starts afresh; `mutation-resume` goes on with an interrupted run (verdicts of
# unchanged functions stand). A test that hangs under a mutant fails after 30 s (the slowest
# test takes about 3 s) instead of holding a worker for mutmut's own, much longer, limit. The
# summary counts tests/mutation-equivalents.md apart; `.venv/bin/mutmut show NAME` shows one.
MUTMUT = PYTEST_ADDOPTS="--timeout=30" $(VENV)/bin/mutmut run

$(VENV)/.mutation-stamp: $(STAMP)
	$(PY) -m pip install --quiet -e '.[dev,mutation]'
	@touch $@

mutation: $(VENV)/.mutation-stamp
	rm -rf mutants
	$(MUTMUT)
	@$(PY) tests/mutation_summary.py

mutation-resume: $(VENV)/.mutation-stamp
	$(PY) scripts/mutation_sync.py
	$(MUTMUT)
	@$(PY) tests/mutation_summary.py

clean: services-stop
	rm -rf out .pytest_cache mutants
