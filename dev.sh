#!/usr/bin/env bash
# The two commands of the README. Each sets up .venv (once, again when requirements change), then:
#   ./dev.sh main [experiments...] [--data-dir DIR] [--out DIR]   run the experiment series, print the results table
#   ./dev.sh test [pytest args...]                                 unit tests + every notebook under nbval
set -euo pipefail
cd "$(dirname "$0")"
PY="${PYTHON:-python3}"
VENV="${PNEUMOLIB_VENV:-.venv}"

setup() {
  [ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
  local stamp="$VENV/.pneumolib-$(cat requirements.txt pyproject.toml | sha1sum | cut -c1-12)"
  if [ ! -f "$stamp" ]; then
    echo "setting up $VENV (first run: installs torch and friends, a few minutes)..." >&2
    # byte-compiled at install (pip's default), never --no-compile: with PYTHONDONTWRITEBYTECODE set, as here, every
    # process would compile every module it imports from source again (measured: CI's pytest 2.3 minutes slower)
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r requirements.txt
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e . \
      || "$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-deps -e .
    touch "$stamp"
  fi
}

cmd="${1:-}"; shift || true
case "$cmd" in
  main) setup; exec "$VENV/bin/python" -m pneumolib run "$@" ;;
  # one worker process per core, at most 4 (pytest-xdist; conftest.py gives each one thread and its own run folders);
  # each file (a notebook's cells, in order; a test module) runs whole on one worker; the notebooks first
  test) setup; export TQDM_DISABLE=1
    workers="${PNEUMOLIB_TEST_WORKERS:-$(nproc)}"; [ "$workers" -gt 4 ] && workers=4
    exec "$VENV/bin/python" -m pytest notebooks tests --nbval-lax --nbval-sanitize-with notebooks/nbval_sanitize.cfg \
      -p no:cacheprovider -n "$workers" --dist loadfile "$@" ;;
  *) echo "usage: ./dev.sh main [run options] | ./dev.sh test [pytest options]" >&2; exit 2 ;;
esac
