#!/usr/bin/env bash
# The project's two entry points on a fresh machine; each sets up .venv on first use.
#   ./run.sh demo [flags]   UNETR++ vs stock nnU-Net on a synthetic dataset (nnUNetv2_unetrpp_demo --help)
#   ./run.sh test [args]    the test-suite (pytest); ./run.sh test -m "not slow" for the quick tier
# The environment is the tested one: constraints.txt pins every package (UNETRPP_CONSTRAINTS= installs
# from the declared ranges instead). It is rebuilt when setup.py, the ranges or the constraints change.
# UNETRPP_VENV=DIR keeps that environment in DIR instead of .venv (e.g. one for several checkouts).
# UNETRPP_PYTHON=PYTHON uses an existing environment as it is (e.g. with a CPU-only torch): nothing is
# installed; it needs nnunetv2_unetrpp (pip install -e ".[test]") importable.
set -euo pipefail
cd "$(dirname "$0")"

if [ -n "${UNETRPP_PYTHON:-}" ]; then
  python="$UNETRPP_PYTHON"
  if ! "$python" -c "import nnunetv2_unetrpp, nnunetv2, pytest" >/dev/null 2>&1; then
    echo "error: $python cannot import nnunetv2_unetrpp, nnunetv2 and pytest; install them there with:" \
         "$python -m pip install -e '.[test]'" >&2
    exit 2
  fi
else
  venv="${UNETRPP_VENV:-.venv}"
  python="$venv/bin/python"
  constraints="${UNETRPP_CONSTRAINTS-constraints.txt}"
  stamp="$venv/.unetrpp-installed"
  wanted="$(cat setup.py nnunetv2_unetrpp/dependencies.py ${constraints:+"$constraints"} | sha256sum | cut -d' ' -f1)"
  if [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ] || ! "$python" -c "import nnunetv2_unetrpp, nnunetv2, pytest" >/dev/null 2>&1; then
    echo "setting up $venv (first run only; downloads PyTorch's CUDA build, about 6.4 GB installed)..." >&2
    python3 -m venv "$venv"
    "$python" -m pip install -q --upgrade pip
    pin=()
    [ -n "$constraints" ] && pin=(-c "$constraints")
    # torch first, so that nnunetv2's dependencies do not pull another build
    "$python" -m pip install -q "${pin[@]}" torch torchvision
    "$python" -m pip install -q "${pin[@]}" -e ".[test]"
    echo "$wanted" > "$stamp"
  fi
fi

command="${1:-}"
shift || true
case "$command" in
  demo) exec "$python" -m nnunetv2_unetrpp.demo "$@" ;;
  test) exec "$python" -m pytest -q -p no:cacheprovider "$@" tests ;;
  *) echo "usage: ./run.sh demo [flags] | ./run.sh test [pytest args]" >&2; exit 2 ;;
esac
