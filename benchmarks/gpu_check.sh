#!/usr/bin/env bash
# GPU checks for the lent GPU machine (under 8 minutes on one H100/H200):
#   1. the GPU-only tests (bf16 autocast, channels_last, CUDA resume, randomized map on CUDA);
#   2. training throughput of every method against the plain DANN loop, on the GPU;
#   3. the PNL ablation on digits uci->mnist-sample, 3 seeds, 8 runs at a time;
#   4. `pnl-da compare` of source_only, dann, cdan and pnl (the ablation's best variant), 3 seeds;
#   5. Office-31-format ResNet-50 at 224, 32+32 images per step (source_only, dann, pnl with the
#      preset's CUDA graphs, and pnl+eager without them): steps/s,
#      images/s, peak memory, data-wait fraction, projected 20,000-step run.
#   6. (stage ssl) CIFAR-10 Conv-Large, the PNL authors' schedule: pnl (dual) vs supervised,
#      images/s and the projected 100-epoch run.
# Results land in $OUT (or benchmarks/results/gpu) and a short table is printed last.
# The machine's python lacks hydra-core/omegaconf: wheels copied into .whl/ are installed first
# (see ../shared/wheels-gpu/README.md). ssl_mnist.py and pnl_ablation.py run their jobs with
# Hydra's joblib launcher: add its wheel beside them first (pure Python; joblib itself comes
# with scikit-learn there): `pip download --no-deps -d .whl hydra-joblib-launcher`.
set -uo pipefail
OUT=${OUT:-benchmarks/results/gpu}
mkdir -p "$OUT"
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}$PWD" PYTHONUNBUFFERED=1
TASK='uci->mnist-sample'
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"

STAGES=${STAGES:-tests throughput ablation compare office}
stage() { [[ " $STAGES " == *" $1 "* ]]; }

stage tests && echo "== 1. GPU tests" && \
python3 -m pytest -q -m gpu ${GPU_TESTS_K:+-k "$GPU_TESTS_K"} tests/ -p no:cacheprovider 2>&1 \
  | tail -5 | tee "$OUT/gpu_tests.txt"  # GPU_TESTS_K: a pytest -k filter

stage throughput && echo "== 2. throughput" && \
python3 benchmarks/train_throughput.py --device cuda --steps 300 --repeats 3 \
  --out "$OUT/train_throughput_gpu.md" 2>/dev/null

if stage ablation; then
echo "== 3. ablation"
python3 benchmarks/pnl_ablation.py --seeds 0,1,2 --jobs 8 --runs /tmp/ablation \
  --out "$OUT/pnl_ablation.md" --json "$OUT/pnl_ablation.json" > "$OUT/ablation_log.txt" 2>&1
tail -25 "$OUT/pnl_ablation.md"
fi

if stage office; then
  echo "== 5. office31 resnet50 throughput"
  python3 benchmarks/office_throughput.py --backbone resnet50 --steps 200 --workers 12 \
    --methods "${OFFICE_METHODS:-source_only,dann,pnl,pnl+eager}" \
    --out "$OUT/office_throughput_gpu.md" 2>&1 | tail -8
fi

if stage sslmnist; then
  echo "== 7. semi-supervised mnist-sample, 20 labels, every method x 5 seeds"
  # SSL_SEEDS / SSL_METHODS / SSL_VARIANTS (space-separated NAME=METHOD,KEY=VALUE,...) widen it
  # SSL_MORE_SEEDS (with SSL_MORE_METHODS, default fixmatch,pnl) runs a second sweep beside the
  # first, into the same runs folder and without the reference row, so that the issue's full
  # table and a wider table of two methods share the card: SSL_JOBS + SSL_MORE_JOBS runs at once,
  # each with SSL_THREADS torch threads (default 1: the card does the work, not the cores).
  # SSL_TIMEOUT (seconds) stops the sweeps early (SIGINT: the pool stops its workers); finished
  # runs keep their result.json, and `ssl_mnist.py --runs DIR` with the same rows builds the
  # table from them afterwards.
  VARIANT_ARGS=(); for v in ${SSL_VARIANTS:-}; do VARIANT_ARGS+=(--variant "$v"); done
  sweep() {  # TAG SEEDS METHODS JOBS [more ssl_mnist.py arguments]
    local tag=$1 seeds=$2 methods=$3 jobs=$4; shift 4
    timeout -s INT "${SSL_TIMEOUT:-0}" python3 benchmarks/ssl_mnist.py --jobs "$jobs" --threads "${SSL_THREADS:-1}" \
      --runs "$OUT/ssl_mnist_runs" --seeds "$seeds" --methods "$methods" "$@" \
      --out "$OUT/ssl_mnist_gpu$tag.md" --json "$OUT/ssl_mnist_gpu$tag.json" \
      > "$OUT/ssl_mnist_log$tag.txt" 2>&1
  }
  sweep "" "${SSL_SEEDS:-0,1,2,3,4}" "${SSL_METHODS:-supervised,mean_teacher,fixmatch,pnl,pnl_paper}" \
    "${SSL_JOBS:-8}" "${VARIANT_ARGS[@]}" &
  [ -n "${SSL_MORE_SEEDS:-}" ] && sweep _more "$SSL_MORE_SEEDS" "${SSL_MORE_METHODS:-fixmatch,pnl}" \
    "${SSL_MORE_JOBS:-7}" --no-reference &
  wait
  tail -30 "$OUT/ssl_mnist_gpu.md"
  [ -n "${SSL_MORE_SEEDS:-}" ] && tail -12 "$OUT/ssl_mnist_gpu_more.md"
  find "$OUT/ssl_mnist_runs" -name last.pt -delete  # keep result.json and metrics, not weights
fi

if stage sslgpu; then
  echo "== 8. semi-supervised GPU tests"
  python3 -m pytest -q -m gpu -k ssl tests/test_gpu.py -p no:cacheprovider 2>&1 | tail -2
fi

if stage ssl; then
  echo "== 6. CIFAR-10 Conv-Large (semi-supervised) throughput"
  python3 benchmarks/ssl_throughput.py --steps 100 --out "$OUT/ssl_throughput_gpu.md" 2>&1 | tail -9
fi

stage compare || exit 0
echo "== 4. compare (baselines and PNL, 3 seeds)"
# With STAGES including ablation, PNL runs with the ablation's best variant; else the default.
[ -f "$OUT/pnl_ablation.json" ] && BEST=$(python3 - "$OUT/pnl_ablation.json" <<'PY'
import json, statistics, sys
runs = json.load(open(sys.argv[1]))
pnl = {k: v for k, v in runs.items() if v["overrides"][0] == "method=pnl"}
best = max(pnl, key=lambda k: statistics.mean(pnl[k]["accuracy"].values()))
# the ablation pins every option; keep those that the best variant reads
from pnl_da.config import compose, inert_overrides
options = [o for o in pnl[best]["overrides"] if o.startswith("method.")]
cfg = compose(["benchmark.source=uci", "benchmark.target=mnist-sample", "method=pnl", *options],
              allow_inert=True)
inert = inert_overrides(cfg.method, options)
print(" ".join(o for o in options if o not in inert))
PY
)
echo "PNL variant overrides: ${BEST:-(the default)}" | tee "$OUT/best_variant.txt"
for m in source_only dann cdan pnl; do
  # the variant's options are PNL's (a compare of dann alone refuses options that change nothing)
  VARIANT=""; [ "$m" = pnl ] && VARIANT="${BEST:-}"
  for s in 0 1 2; do  # one process per run, then one compare that reuses them all
    python3 -m pnl_da.cli compare digits "$TASK" --methods $m --seeds $s --out /tmp/compare \
      trainer.progress=false $VARIANT > "/tmp/compare_$m$s.log" 2>&1 &
  done
done
wait
python3 -m pnl_da.cli compare digits "$TASK" --seeds 0,1,2 --out /tmp/compare \
  trainer.progress=false ${BEST:-} 2>/dev/null | tee "$OUT/comparison_gpu.md"
cp /tmp/compare/comparison.csv "$OUT/comparison_gpu.csv" 2>/dev/null
cp /tmp/compare/comparison.tex "$OUT/comparison_gpu.tex" 2>/dev/null
cat "$OUT/train_throughput_gpu.md" 2>/dev/null
