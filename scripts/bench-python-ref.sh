#!/bin/sh
# Runs the Python reference (dane-discovery 0.22) over a list of device names, for the
# side-by-side figure of `cargo bench --bench sync` (which starts knotd and the HTTPS
# server and calls this script with their addresses). Creates a venv under target/ on
# first use (python3 -m venv, `pip install dane-discovery==0.22` from PyPI).
#
# usage: scripts/bench-python-ref.sh --dns IP:PORT --https IP:PORT --web-root PEM \
#            --names FILE --out FILE [--dns-timeout S] [--deadline S]
# env:   RLM_BENCH_PY_VENV (default target/bench-python-ref/venv), PYTHON (default python3)
set -eu
cd "$(dirname "$0")/.."
VENV=${RLM_BENCH_PY_VENV:-target/bench-python-ref/venv}
PYTHON=${PYTHON:-python3}
if ! "$VENV/bin/python" -c 'import importlib.metadata as m, sys; sys.exit(m.version("dane-discovery") != "0.22")' \
    2>/dev/null; then
    echo "bench-python-ref: creating $VENV (dane-discovery==0.22 from PyPI)" >&2
    "$PYTHON" -m venv "$VENV"
    timeout 300 "$VENV/bin/pip" install --quiet --disable-pip-version-check dane-discovery==0.22 >&2
fi
# The bench bounds the run too; this is the backstop for a standalone call.
exec timeout 900 "$VENV/bin/python" benches/python_ref.py "$@"
