# Crucible: `make run` serves the app on 127.0.0.1:8000, `make test` runs the whole suite.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
PG_URL ?= postgres://postgres@127.0.0.1:5432/test

# Django 6.1 needs Python 3.12+: take one from PATH, else from pyenv's versions folder.
PYTHON ?= $(shell for p in python3.13 python3.12 python3; do \
	  c=$$(command -v $$p) && $$c -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null && { echo $$c; exit; }; \
	done; \
	for c in $$(ls -d $${PYENV_ROOT:-$$HOME/.pyenv}/versions/3.1[2-9]*/bin/python3 2>/dev/null | sort -rV); do \
	  $$c -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null && { echo $$c; exit; }; \
	done)

.PHONY: run test test-sqlite test-postgres lint bench screenshots clean

$(VENV)/.installed: pyproject.toml
	@test -n "$(PYTHON)" || { echo "Crucible needs Python 3.12 or newer; none found on PATH or under pyenv." >&2; exit 1; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet ".[dev]"
	@touch $@

run: $(VENV)/.installed
	$(PY) manage.py migrate --noinput
	$(PY) manage.py ensure_superuser
	$(PY) manage.py collectstatic --noinput --verbosity 0
	$(VENV)/bin/gunicorn config.wsgi --bind 127.0.0.1:8000 --workers 2 --threads 4 --access-logfile -

test: $(VENV)/.installed
	@$(MAKE) --no-print-directory test-sqlite
	@$(MAKE) --no-print-directory test-postgres

test-sqlite: $(VENV)/.installed
	@echo "== tests on SQLite =="
	env -u DATABASE_URL $(VENV)/bin/pytest $(PYTEST_ARGS)

# Off CI a missing server skips this run with one line; in CI it must be there.
test-postgres: $(VENV)/.installed
	@if $(PY) -c "import psycopg; psycopg.connect('$(PG_URL)', connect_timeout=3).close()" 2>/dev/null; then \
	  echo "== tests on PostgreSQL =="; \
	  DATABASE_URL=$(PG_URL) $(VENV)/bin/pytest $(PYTEST_ARGS); \
	elif [ -n "$$CI" ]; then \
	  echo "PostgreSQL is not reachable at $(PG_URL), and CI requires it." >&2; exit 1; \
	else \
	  echo "SKIPPED PostgreSQL tests: no server reachable at $(PG_URL)."; \
	fi

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy .

screenshots: $(VENV)/.installed
	$(PY) docs/screenshots.py

bench: $(VENV)/.installed
	$(PY) bench/core.py --db sqlite
	$(PY) bench/core.py --db postgres

clean:
	rm -rf $(VENV) staticfiles .pytest_cache .mypy_cache .ruff_cache
