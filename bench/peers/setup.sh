#!/usr/bin/env bash
# Create bench/.venv-peers: a venv, separate from the project's, holding the
# peer task queues that bench/peers/run.py compares Crucible against (django-tasks-db,
# procrastinate, huey, django-q2), plus matplotlib for the chart and psutil for
# the workers' memory. None of these belong in the project's own dependencies.
#
# Every peer accepts Django 6.1 (django-tasks-db 0.13 needs django>=5.2;
# procrastinate 3.10's [django] extra needs django>=2.2; huey's djhuey and
# django-q2 import only stable Django APIs), so the venv uses the same Django line
# as the project. Crucible itself runs with the project's .venv, not this one.
#
# Idempotent: re-running reuses the venv and only installs what is missing.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="$(cd "$HERE/.." && pwd)/.venv-peers"
PYTHON="${PEERS_PYTHON:-$(pyenv root 2>/dev/null)/versions/3.13.0/bin/python3}"

if [[ ! -x "$PYTHON" ]]; then
    echo "setup.sh: no Python 3.13 at $PYTHON (set PEERS_PYTHON to override)" >&2
    exit 1
fi

if [[ ! -x "$VENV/bin/python" ]]; then
    "$PYTHON" -m venv "$VENV"
fi

"$VENV/bin/python" -m pip install --quiet \
    "django>=6.1,<6.2" \
    "django-tasks-db==0.13.*" \
    "procrastinate[django]==3.10.*" \
    "psycopg[binary,pool]>=3.2,<4" \
    "huey==3.5.*" \
    "django-q2==1.11.*" \
    "matplotlib>=3.9,<4" \
    "psutil>=6,<8"

"$VENV/bin/python" - <<'PY'
from importlib.metadata import version

for name in ("django", "django-tasks-db", "procrastinate", "huey", "django-q2", "psycopg",
             "psycopg-binary", "psycopg-pool", "matplotlib", "psutil"):
    print(f"{name}=={version(name)}")
PY
