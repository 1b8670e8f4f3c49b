#!/usr/bin/env bash
# Prepares, on this (CPU) machine, what a lent GPU machine lacks, in ignored folders that the device
# tool's `carry` takes along (at most 64 MiB a call, so the models travel in parts):
#   .whl/          cp312 wheels of this project's packages that the GPU machine does not have
#                  (pydantic, gguf, lm-eval and what lm-eval imports), at the versions of .venv
#   .gpu/data/     the pool and the benchmark files (../shared does not travel)
#   .gpu/parts/N/  the packaged GGUF files cut into parts of 45 MB (SmolLM2, and Gemma 3 270M when
#                  its packages are installed), with .gpu/parts/manifest.txt (name, sha256, parts)
#   .gpu/tok/      SmolLM2's tokenizer, for benchmarks/gpu.py's random-weight shapes
#   .gpu/ray/      ray's cp312 wheel in two halves (79 MB), its sha256, and its dependencies' wheels
# Run from the repository root after `make install`; then see benchmarks/gpu_session.sh.
set -euo pipefail
PY=.venv/bin/python
PIP=.venv/bin/pip
SHARED=${SHARED:-../shared/data}
grep -qxF '/.whl/' .git/info/exclude 2>/dev/null || printf '/.whl/\n/.gpu/\n' >> .git/info/exclude
rm -rf .whl .gpu && mkdir -p .whl .gpu/data/pool .gpu/parts .gpu/ray/deps

binary=(pydantic pydantic-core annotated-types typing-inspection gguf lm-eval datasets dill evaluate more-itertools
        pytablewriter dataproperty mbstrdecoder pathvalidate tabledata tcolorpy typepy chardet sacrebleu portalocker
        tabulate colorama lxml multiprocess xxhash absl-py nltk)
source_only=(word2number sqlitedict rouge-score)
pinned() { for name in "$@"; do echo "$name==$($PIP show "$name" 2>/dev/null | sed -n 's/^Version: //p')"; done; }
$PIP download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp --abi cp312 \
  --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 \
  -d .whl $(pinned "${binary[@]}" | grep -v '==$')
$PIP wheel -q --no-deps -w .whl $(pinned "${source_only[@]}" | grep -v '==$')

binary312() { $PIP download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp --abi cp312 \
  --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 "$@"; }
binary312 -d .gpu/ray "ray==$($PIP show ray | sed -n 's/^Version: //p')"
ray_deps=(click filelock jsonschema jsonschema-specifications referencing rpds-py attrs msgpack protobuf pyyaml
          requests charset-normalizer idna urllib3 certifi fsspec)
binary312 -d .gpu/ray/deps $(pinned "${ray_deps[@]}" | grep -v '==$')
(cd .gpu/ray && wheel=$(ls ray-*.whl) && sha256sum "$wheel" > ray.sha256 && split -n 2 -d "$wheel" part && mv part00 part1 \
  && mv part01 part2 && rm "$wheel")

cp "$SHARED/pool/pool.jsonl.gz" .gpu/data/pool/
cp -r "$SHARED/bench" .gpu/data/

$PY -c "from daar.models import load_tokenizer, resolve_model; load_tokenizer(resolve_model('smollm2-135m-instruct')).save_pretrained('.gpu/tok')"
$PY - <<'PY'
import hashlib
from pathlib import Path
from daar.models.builtin import BUILTIN_MODELS, ModelError, builtin_gguf

part_size = 45 * 2**20
index = 0
lines = []
for alias in BUILTIN_MODELS:
    try:
        source = builtin_gguf(alias)
    except ModelError as err:
        print(f"skipped {alias}: {err}")
        continue
    data = source.read_bytes()
    first = index
    for start in range(0, len(data), part_size):
        folder = Path(f".gpu/parts/{index}")
        folder.mkdir(parents=True)
        (folder / "part").write_bytes(data[start : start + part_size])
        index += 1
    lines.append(f"{alias} {source.name} {hashlib.sha256(data).hexdigest()} {first} {index - 1}")
Path(".gpu/parts/manifest.txt").write_text("\n".join(lines) + "\n")
print("\n".join(lines))
PY
du -sh .whl .gpu/data .gpu/tok .gpu/ray .gpu/parts/*
