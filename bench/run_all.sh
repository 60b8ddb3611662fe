#!/usr/bin/env bash
# Every benchmark, one after the other, in one run (so ratios compare like with like).
# Figures land in bench/results/*.json; bench/README.md records them with the date.
# Needs the project's .venv (make test creates it) and PostgreSQL at 127.0.0.1:5432.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=bench/results
mkdir -p "$OUT"
PY=.venv/bin/python

bash bench/peers/setup.sh
bench/.venv-peers/bin/python bench/peers/run.py --crucible-python "$PY" --out-dir "$OUT"
for db in sqlite postgres; do
  $PY bench/core.py --db "$db" --json "$OUT/core-$db.json"
  $PY bench/status.py --db "$db" --json "$OUT/status-$db.json"
done
$PY bench/sweep.py --repeat 2 | tee "$OUT/sweep.txt"
