#!/usr/bin/env bash
# GPU readiness check of sb3_gap, under 5 minutes on one GPU. Run from the repository root:
#
#   bash benchmarks/gpu_check.sh             # on a CUDA machine: fails loudly without a CUDA device
#   bash benchmarks/gpu_check.sh --dry-run   # anywhere: the same steps on CPU, shortened (checks the script itself)
#
# 1. the CUDA tests (tests/test_speed.py, tests/test_rainbow.py -k cuda: Rainbow trains on CUDA, replay samples land
#    on CUDA through pinned memory, compile=True on CUDA matches eager, with and without CUDA graphs); a skipped
#    CUDA test counts as a failure;
# 2. short Rainbow runs on MinAtar Breakout and Pong (Nature; Impala x4 GAP and flatten), eager and compile=True
#    (mode reduce-overhead: CUDA graphs), printing steps/s, ms/update and peak GPU memory
#    (benchmarks/gpu_check_runs.py).
# Needs a CUDA build of torch (with triton) and the package installed (pip install -e ".[test]"), ale-py for Pong.
# PYTHON overrides the interpreter (default: .venv/bin/python if present, else python3).
# Exit status: 0 all passed, 1 a step failed, 2 no CUDA device.
set -uo pipefail

cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}"
DRY_RUN=0
case "${1:-}" in
  "") ;;
  --dry-run) DRY_RUN=1 ;;
  *) echo "gpu_check.sh: unknown argument '$1'; valid: --dry-run" >&2; exit 1 ;;
esac
START=$(date +%s)
FAILED=()
OUT="$(mktemp -d)"
trap 'rm -rf "$OUT"' EXIT

echo "== gpu_check: $(date -u +%Y-%m-%dT%H:%M:%SZ), $(hostname), python $("$PYTHON" -c 'import sys; print(sys.version.split()[0])')"
if [ "$DRY_RUN" = 0 ]; then
  if ! "$PYTHON" - <<'EOF'
import sys
import torch
if not torch.cuda.is_available():
    print(f"torch {torch.__version__} (CUDA build: {torch.version.cuda}) sees no CUDA device", file=sys.stderr)
    sys.exit(1)
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, {torch.cuda.device_count()} device(s): "
      + ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())))
EOF
  then
    echo "!! gpu_check: FAILED: no CUDA device. This script checks the GPU path and must run on a GPU machine" >&2
    echo "!! (or run 'bash benchmarks/gpu_check.sh --dry-run' to check the script on CPU)." >&2
    exit 2
  fi
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  DEVICE=cuda
  RUN_ARGS=()
else
  echo "-- dry run on CPU: CUDA tests are collected and skipped, runs shortened"
  DEVICE=cpu
  RUN_ARGS=(--quick --threads 1)
fi

echo
echo "== 1. CUDA tests"
# -k cuda: every test whose id names CUDA; -rs lists the skipped ones and why
"$PYTHON" -m pytest -q -p no:cacheprovider -rs -k cuda tests/test_speed.py tests/test_rainbow.py 2>&1 | tee "$OUT/tests.txt"
TEST_STATUS=${PIPESTATUS[0]}
if [ "$TEST_STATUS" != 0 ]; then
  FAILED+=("CUDA tests (pytest exit $TEST_STATUS)")
elif [ "$DRY_RUN" = 0 ] && grep -qE "[0-9]+ skipped" "$OUT/tests.txt"; then
  FAILED+=("CUDA tests: some were skipped on a CUDA machine (see the SKIPPED lines)")
fi

echo
echo "== 2. Short Rainbow runs on $DEVICE, eager and compile=True"
"$PYTHON" benchmarks/gpu_check_runs.py --device "$DEVICE" ${RUN_ARGS[@]+"${RUN_ARGS[@]}"} 2>&1 | tee "$OUT/runs.txt"
RUN_STATUS=${PIPESTATUS[0]}
if [ "$RUN_STATUS" != 0 ]; then
  FAILED+=("short runs (exit $RUN_STATUS; see the FAILED rows and tracebacks above)")
fi

echo
echo "== gpu_check: $(( $(date +%s) - START )) s"
if [ "${#FAILED[@]}" != 0 ]; then
  printf '!! gpu_check: FAILED: %s\n' "${FAILED[@]}" >&2
  exit 1
fi
echo "gpu_check: all passed"
