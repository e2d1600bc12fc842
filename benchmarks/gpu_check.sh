#!/usr/bin/env bash
# One-shot accelerator check for qdyn: install with the CUDA extra, run circuits, training,
# MD (1, 64, 1024, 8192 replicas) and FSSH within a time budget, write ONE JSON.
#
# Usage (from anywhere; a fresh machine with an NVIDIA GPU and python3 ≥ 3.11):
#   benchmarks/gpu_check.sh                  # venv .venv-gpu, pip install -e ".[cuda]", full sizes
#   benchmarks/gpu_check.sh --no-install     # use the python already active
#   benchmarks/gpu_check.sh --cpu-smoke      # tiny sizes on CPU, current python (proves the script)
#   OUT=path.json BUDGET_S=420 benchmarks/gpu_check.sh
# Result: benchmarks/results/gpu_check.json (gpu_check_smoke.json with --cpu-smoke).
# Sizes fit 8 minutes: the python driver stops starting sections after BUDGET_S (default
# 450 s) and an outer timeout kills it at 8 min; the JSON is rewritten after every section.
set -euo pipefail
cd "$(dirname "$0")/.."

smoke=0
install=1
for arg in "$@"; do
  case "$arg" in
    --cpu-smoke) smoke=1; install=0 ;;
    --no-install) install=0 ;;
    *) echo "gpu_check.sh: unknown argument $arg (use --cpu-smoke, --no-install)" >&2; exit 2 ;;
  esac
done
out="${OUT:-benchmarks/results/gpu_check$([ $smoke = 1 ] && echo _smoke).json}"
budget="${BUDGET_S:-450}"

if [ "$install" = 1 ]; then
  python3 -m venv .venv-gpu
  . .venv-gpu/bin/activate
  python -m pip install -q --upgrade pip
  # the verified pins for everything qdyn shares with the CPU install; the CUDA plugin
  # wheels follow jax's own pins
  python -m pip install -q -c constraints.txt -e ".[cuda]"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
fi

args=(--out "$out" --budget-s "$budget")
[ "$smoke" = 1 ] && args+=(--cpu-smoke) && export JAX_PLATFORMS=cpu
timeout 480 python benchmarks/gpu_check.py "${args[@]}"
python -c "import json,sys; d=json.load(open(sys.argv[1])); print(json.dumps({'device': d['device'], 'total_s': round(d['total_s'],1), 'md_batching_ratio': d.get('md_batching_ratio'), 'sections': {k: ('ok' if 'error' not in v and 'skipped' not in v else (v.get('error') or v.get('skipped'))[:120]) for k, v in d['sections'].items()}}, indent=2))" "$out"
