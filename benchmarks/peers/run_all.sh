#!/usr/bin/env bash
# Run every peer benchmark on one fixture, each in its own process, cross-check, and print the
# README's performance table as markdown (also written to OUT_DIR/table.md).
#   bash benchmarks/peers/run_all.sh [OUT_DIR] [REPEATS] [EXTRA]
# PEERS_PY: the peers venv's python (default /work/peers-venv/bin/python).
# OURS_PY: the project's python (default .venv/bin/python in the repo).
# EXTRA=1 also times the alternative methods (TL's patching utility, pyvene's sources=).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
py="${PEERS_PY:-/work/peers-venv/bin/python}"
ours_py="${OURS_PY:-$here/../../.venv/bin/python}"
out="${1:-/tmp/peer-bench}"
repeats="${2:-3}"
extra="${3:-0}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
mkdir -p "$out"
model="$out/model"
[ -f "$model/batch.pt" ] || "$py" "$here/make_model.py" "$model"

runs=(  # tools alternate within each experiment
  "hf_reference.py act_patch_heads -"
  "ours_bench.py act_patch_heads default"
  "ours_bench.py act_patch_heads tuned"
  "tl_bench.py act_patch_heads batched"
  "pyvene_bench.py act_patch_heads source_reps"
  "hf_reference.py path_patch_q -"
  "ours_bench.py path_patch_q default"
  "ours_bench.py path_patch_q tuned"
  "tl_bench.py path_patch_q fork"
  "tl_bench.py path_patch_q two_run"
  "pyvene_bench.py path_patch_q two_run"
  "ours_bench.py scrub -"
  "tl_bench.py scrub -"
  "pyvene_bench.py scrub -"
)
if [ "$extra" = 1 ]; then
  runs+=("tl_bench.py act_patch_heads patching" "pyvene_bench.py act_patch_heads sources")
fi
for run in "${runs[@]}"; do
  read -r script experiment method <<<"$run"
  args=("$here/$script" "$model" --experiment "$experiment" --repeats "$repeats")
  [ "$method" = - ] || args+=(--method "$method")
  name="$out/${script%.py}.$experiment.$method.json"
  echo "== $script $experiment $method" >&2
  runner="$py"; [ "$script" = ours_bench.py ] && runner="$ours_py"
  "$runner" "${args[@]}" >"$name" 2>"$name.err" || { echo "failed: see $name.err" >&2; exit 1; }
  grep '^{' "$name" | tail -1 | cut -c1-200 >&2
done
status=0
"$py" "$here/compare.py" "$out"/*.json || status=$?
"$py" "$here/table.py" "$out"/*.json | tee "$out/table.md"
[ "$status" = 0 ] || echo "the cross-check failed (see above): the table's numbers are not comparable" >&2
exit "$status"
