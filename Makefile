# Crucible: `make run` serves the app on 127.0.0.1:8000, `make test` runs the whole suite.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
PG_URL ?= postgres://postgres@127.0.0.1:5432/test
# One test process per core (pytest-xdist), whole files at a time: most tests wait on real
# worker processes, and their waits overlap. `make test PYTEST_ARGS=` runs one process.
PYTEST_ARGS ?= -n auto --dist loadfile

# Django 6.1 needs Python 3.12+: take one from PATH, else from pyenv's versions folder.
PYTHON ?= $(shell for p in python3.13 python3.12 python3; do \
	  c=$$(command -v $$p) && $$c -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null && { echo $$c; exit; }; \
	done; \
	for c in $$(ls -d $${PYENV_ROOT:-$$HOME/.pyenv}/versions/3.1[2-9]*/bin/python3 2>/dev/null | sort -rV); do \
	  $$c -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null && { echo $$c; exit; }; \
	done)

.PHONY: run test test-sqlite test-postgres lint bench screenshots clean

# `make run` installs what serves the app; tests, linters, screenshots and benchmarks add the
# development extras (pytest, mypy, ruff, Playwright...). Each set has its own stamp file,
# redone when pyproject.toml changes; pip shows what it fetches and builds.
$(PY):
	@py="$(PYTHON)"; \
	test -n "$$py" || { echo "Crucible needs Python 3.12 or newer; none found on PATH or under pyenv." >&2; exit 1; }; \
	echo "== Creating the virtual environment $(VENV) with $$py =="; \
	"$$py" -m venv $(VENV)
	@echo "== Upgrading pip in $(VENV) =="
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip

$(VENV)/.installed-run: pyproject.toml | $(PY)
	@echo "== Installing Crucible's runtime dependencies into $(VENV) (not the development extras) =="
	$(PY) -m pip install --disable-pip-version-check "."
	@touch $@

$(VENV)/.installed-dev: pyproject.toml | $(PY)
	@echo "== Installing Crucible with its development extras (pytest, mypy, ruff, Playwright) into $(VENV) =="
	$(PY) -m pip install --disable-pip-version-check ".[dev]"
	@touch $@ $(VENV)/.installed-run

run: $(VENV)/.installed-run
	@echo "== Compiling Crucible's modules (workers start faster where bytecode is not written) =="
	$(PY) -m compileall -q config workers simulations bench
	@echo "== Applying database migrations =="
	$(PY) manage.py migrate --noinput
	@echo "== Making sure the admin account exists =="
	$(PY) manage.py ensure_superuser
	@echo "== Collecting static files =="
	$(PY) manage.py collectstatic --noinput --verbosity 0
	@echo "== Serving on http://127.0.0.1:8000/admin/ (Ctrl-C stops) =="
	$(VENV)/bin/gunicorn config.wsgi --bind 127.0.0.1:8000 --workers 2 --threads 4 --access-logfile -

test: $(VENV)/.installed-dev
	@$(MAKE) --no-print-directory test-sqlite
	@$(MAKE) --no-print-directory test-postgres

test-sqlite: $(VENV)/.installed-dev
	@echo "== tests on SQLite =="
	env -u DATABASE_URL $(VENV)/bin/pytest $(PYTEST_ARGS)

# Off CI a missing server skips this run with one line; in CI it must be there.
test-postgres: $(VENV)/.installed-dev
	@if $(PY) -c "import psycopg; psycopg.connect('$(PG_URL)', connect_timeout=3).close()" 2>/dev/null; then \
	  echo "== tests on PostgreSQL =="; \
	  DATABASE_URL=$(PG_URL) $(VENV)/bin/pytest $(PYTEST_ARGS); \
	elif [ -n "$$CI" ]; then \
	  echo "PostgreSQL is not reachable at $(PG_URL), and CI requires it." >&2; exit 1; \
	else \
	  echo "SKIPPED PostgreSQL tests: no server reachable at $(PG_URL)."; \
	fi

lint: $(VENV)/.installed-dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy .

screenshots: $(VENV)/.installed-dev
	$(PY) docs/screenshots.py

bench: $(VENV)/.installed-dev
	$(PY) bench/core.py --db sqlite
	$(PY) bench/core.py --db postgres

clean:
	rm -rf $(VENV) staticfiles .pytest_cache .mypy_cache .ruff_cache
