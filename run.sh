#!/usr/bin/env bash
# The project's two entry points on a fresh machine; each sets up .venv on first use.
#   ./run.sh demo [flags]   UNETR++ vs stock nnU-Net on a synthetic dataset (nnUNetv2_unetrpp_demo --help)
#   ./run.sh test [args]    the test-suite (pytest)
set -euo pipefail
cd "$(dirname "$0")"
venv="${UNETRPP_VENV:-.venv}"
torch_spec="${UNETRPP_TORCH:-torch==2.14.1 torchvision==0.29.1}"

if ! "$venv/bin/python" -c "import nnunetv2_unetrpp, nnunetv2, pytest" >/dev/null 2>&1; then
  echo "setting up $venv (first run only, about 2 minutes)..." >&2
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install -q --upgrade pip
  # torch first, pinned, so that nnunetv2's dependencies do not pull another build
  # shellcheck disable=SC2086
  "$venv/bin/python" -m pip install -q $torch_spec
  "$venv/bin/python" -m pip install -q -e ".[test]"
fi

command="${1:-}"
shift || true
case "$command" in
  demo) exec "$venv/bin/nnUNetv2_unetrpp_demo" "$@" ;;
  test) exec "$venv/bin/python" -m pytest -q -p no:cacheprovider "$@" tests ;;
  *) echo "usage: ./run.sh demo [flags] | ./run.sh test [pytest args]" >&2; exit 2 ;;
esac
