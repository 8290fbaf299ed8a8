#!/usr/bin/env bash
# The GPU path, on a machine with CUDA (README, "Performance": what a GPU changes). From the
# repository root, after the README's install command:
#
#     bench/gpu_check.sh
#
# 1. the tests marked `gpu`;
# 2. `grader check --device cuda` of the bundled course: every solution scores full marks and
#    every exercise zero, without a grader error, each notebook run on cuda (asserted, printed);
# 3. `grader grade` of a small class (SUBMISSIONS of each notebook, default 2) on cuda and on
#    the CPU, two interleaved rounds, wall seconds of each.
#
# Every step runs under `timeout` and the whole within 10 minutes. Without CUDA it says so and
# exits 0, having run nothing. Not part of the test suite. PYTHON: another environment's python.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-.venv/bin/python}
GRADER="$(dirname "$PYTHON")/grader"
SUBMISSIONS=${SUBMISSIONS:-2}
# A fixed secret for the hidden variants, so that no new one is written into the checkout.
export GRADER_HIDDEN_SEED=${GRADER_HIDDEN_SEED:-1729}

if ! "$PYTHON" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
    echo "gpu_check: torch sees no CUDA device on this machine: nothing to check"
    exit 0
fi
"$PYTHON" -c 'import torch; p = torch.cuda.get_device_properties(0); print(f"gpu_check: {torch.cuda.device_count()} device(s), {p.name}, {p.total_memory / 2**30:.0f} GiB; torch {torch.__version__}, CUDA {torch.version.cuda}")'
# A sandboxed kernel sees only the device nodes that exist when it starts, and cannot make one:
# the driver makes /dev/nvidia-uvm at the first CUDA call as root (the line above, as root).
echo "gpu_check: device nodes: $(ls -d /dev/nvidia* 2>/dev/null | tr '\n' ' ')"

work=$(mktemp -d -t grader-gpu-check-XXXXXX)
trap 'rm -rf "$work"' EXIT
deadline=$((SECONDS + 570)) # 10 minutes, less the set-up above

within() { # `timeout` of at most $1 seconds and never past the deadline, then the command
    local limit=$1 left=$((deadline - SECONDS))
    shift
    if [ "$left" -lt "$limit" ]; then limit=$left; fi
    if [ "$limit" -le 0 ]; then
        echo "gpu_check: out of time" >&2
        return 124
    fi
    timeout "$limit" "$@"
}

seconds() { # wall seconds of a command, printed; its output in $work/last.*, its status returned
    local started status=0
    started=$(date +%s.%N)
    "$@" >"$work/last.out" 2>"$work/last.err" || status=$?
    printf '%.1f\n' "$(echo "$(date +%s.%N) - $started" | bc)"
    return "$status"
}

echo "== 1. the tests marked gpu"
within 180 "$PYTHON" -m pytest -m gpu -q -p no:cacheprovider

echo "== 2. the bundled course on cuda"
for folder in solutions exercises; do
    status=0
    took=$(seconds within 120 "$GRADER" check "$folder" --device cuda --json "$work/$folder.json") ||
        status=$?
    if [ "$status" -ge 2 ]; then # 1: an exercise lost points; 2: a grader error; 124: timeout
        echo "gpu_check: grader check $folder --device cuda exited $status:"
        tail -n 5 "$work/last.err"
        exit 1
    fi
    "$PYTHON" - "$work/$folder.json" "$folder" "$took" <<'PY'
import json, sys

results = json.load(open(sys.argv[1]))
folder, took = sys.argv[2], sys.argv[3]
score, maximum = results["score"], results["max_score"]
devices = sorted({notebook["device"] for notebook in results["extra_data"]["notebooks"]})
print(f"gpu_check: {folder}: {score:g}/{maximum:g} points on {', '.join(devices)} in {took} s")
expected = maximum if folder == "solutions" else 0
if score != expected or devices != ["cuda"]:
    sys.exit(f"gpu_check: {folder} should score {expected:g}, every notebook on cuda")
PY
done

echo "== 3. a class of $SUBMISSIONS submissions of each notebook, cuda against cpu"
for index in $(seq 1 "$SUBMISSIONS"); do
    mkdir -p "$work/class/student$index"
    cp solutions/*.ipynb "$work/class/student$index/"
done
# the CPU's references, once (step 2 made cuda's)
within 90 "$GRADER" check "$work/class/student1" --device cpu >/dev/null 2>&1 || true
round=0
for order in "cuda cpu" "cpu cuda"; do # neither device always goes first
    round=$((round + 1))
    for device in $order; do
        took=$(seconds within 60 "$GRADER" grade "$work/class" --device "$device" \
            --db "$work/$device-$round.db") || {
            echo "gpu_check: grade --device $device failed:"
            tail -n 5 "$work/last.err"
            exit 1
        }
        echo "gpu_check: round $round: grade --device $device: $took s; $(tail -n 1 "$work/last.out")"
    done
done
echo "gpu_check: done"
