"""Partial loading: the embedding matrix alone, and the model cut to its first `clip_layer` layers.

Checkpoints are generated for real (random 6-layer Llama and Qwen2 with the SmolLM2 tokenizer),
saved as one safetensors file and as many small shards. What was read is checked three ways: the
`bytes_read` counter equals the exact byte size of the needed tensors, the outputs match the full
model's, and a checkpoint with the unneeded tensors physically removed still loads.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from conftest import make_tiny_model
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from daar.models import (
    Checkpoint,
    ModelError,
    fingerprint,
    load_tokenizer,
    load_truncated,
    pick_device,
    pick_dtype,
    prober_dtype,
    resolve_model,
)
from daar.models.loader import cpu_has_bf16

EMBED = ("embed_tokens.weight",)

LAYERS, HIDDEN, CLIP = 6, 64, 2
TEXTS = [
    "Instruction: Add 2 and 3.\nOutput: 5",
    "Instruction: Write a Python function that returns the square of a number.\nOutput: def sq(x):\n    return x * x",
]


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """Tiny matmuls on a shared 2-core machine: one thread avoids OpenMP waits (30 ms per call) and is exact."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _sharded_copy(folder: Path, target: Path) -> Path:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(folder)
    model.save_pretrained(target, max_shard_size="200KB")
    load_tokenizer(folder).save_pretrained(target)
    return target


@pytest.fixture(scope="module", params=["llama", "qwen2"])
def checkpoints(request, tmp_path_factory) -> dict[str, Path]:
    """The same weights saved whole and sharded."""
    base = tmp_path_factory.mktemp(f"ckpt-{request.param}")
    whole = make_tiny_model(base / "whole", layers=LAYERS, hidden=HIDDEN, arch=request.param)
    return {"whole": whole, "sharded": _sharded_copy(whole, base / "sharded"), "arch": request.param}


@pytest.fixture(scope="module")
def full_outputs(checkpoints):
    """The full model's hidden states on two padded texts, the reference for every check."""
    from transformers import AutoModel

    model = AutoModel.from_pretrained(checkpoints["whole"]).eval()
    tokenizer = load_tokenizer(checkpoints["whole"])
    batch = tokenizer(TEXTS, return_tensors="pt", padding=True)
    with torch.no_grad():
        out = model(**batch, output_hidden_states=True)
    return model, batch, out


def _tensor_bytes(folder: Path) -> dict[str, int]:
    sizes: dict[str, int] = {}
    for file in folder.glob("*.safetensors"):
        with safe_open(file, framework="pt") as handle:
            for key in handle.keys():
                sliced = handle.get_slice(key)
                numel = 1
                for n in sliced.get_shape():
                    numel *= n
                sizes[key] = numel * 4  # the tiny models are saved in float32
    return sizes


def _needed(name: str, clip: int) -> bool:
    if "embed_tokens" in name or name.endswith("model.norm.weight"):
        return True
    return any(f".layers.{i}." in name for i in range(clip))


def test_sharded_copy_really_has_many_shards(checkpoints):
    sharded = checkpoints["sharded"]
    assert (sharded / "model.safetensors.index.json").exists()
    assert len(list(sharded.glob("*.safetensors"))) >= 4
    assert len(list(checkpoints["whole"].glob("*.safetensors"))) == 1


@pytest.mark.parametrize("layout", ["whole", "sharded"])
def test_embedding_matrix_alone(checkpoints, full_outputs, layout):
    folder = checkpoints[layout]
    model = full_outputs[0]
    reader = Checkpoint.open(folder)
    matrix = reader.read([reader.find(EMBED)])[reader.find(EMBED)]
    assert matrix.shape == (model.config.vocab_size, HIDDEN)
    assert torch.equal(matrix, model.get_input_embeddings().weight)

    checkpoint = Checkpoint.open(folder)
    assert checkpoint.bytes_read == 0  # opening reads only the headers / index
    key = checkpoint.find(("embed_tokens.weight",))
    assert key == "model.embed_tokens.weight"
    tensor = checkpoint.read([key])[key]
    assert checkpoint.bytes_read == model.config.vocab_size * HIDDEN * 4 == tensor.numel() * 4
    assert checkpoint.bytes_read < sum(_tensor_bytes(folder).values())


@pytest.mark.parametrize("layout", ["whole", "sharded"])
def test_truncated_model_matches_full_model_at_the_clip_layer(checkpoints, full_outputs, layout):
    """load_truncated keeps the final norm, so its output is norm(hidden_states[clip]) of the full model."""
    folder = checkpoints[layout]
    full, batch, out = full_outputs
    checkpoint = Checkpoint.open(folder)
    model = load_truncated(folder, CLIP, checkpoint=checkpoint)
    assert len(model.layers) == CLIP and model.config.num_hidden_layers == CLIP
    assert not model.training
    with torch.no_grad():
        cut = model(**batch, output_hidden_states=True)
        expected = full.norm(out.hidden_states[CLIP])
    mask = batch["attention_mask"].bool()
    assert mask.sum() < mask.numel()  # the batch is padded: compare the real tokens
    assert torch.allclose(cut.last_hidden_state[mask], expected[mask], atol=1e-5)
    assert torch.allclose(cut.hidden_states[0], out.hidden_states[0], atol=0)
    assert torch.allclose(cut.hidden_states[1][mask], out.hidden_states[1][mask], atol=1e-5)

    # exactly the embedding, the first CLIP layers and the final norm were read, nothing else
    sizes = _tensor_bytes(folder)
    needed = {k for k in sizes if _needed(k, CLIP)}
    assert checkpoint.bytes_read == sum(sizes[k] for k in needed)
    skipped = sum(sizes.values()) - checkpoint.bytes_read
    per_layer = sum(v for k, v in sizes.items() if ".layers.0." in k)
    assert skipped >= (LAYERS - CLIP) * per_layer
    if checkpoints["arch"] == "qwen2":  # untied: lm_head is in the file and never read
        assert "lm_head.weight" in sizes and "lm_head.weight" not in needed


def test_clip_at_every_depth_matches_the_full_model(checkpoints, full_outputs):
    folder = checkpoints["whole"]
    full, batch, out = full_outputs
    mask = batch["attention_mask"].bool()
    for clip in (1, LAYERS):
        model = load_truncated(folder, clip)
        with torch.no_grad():
            cut = model(**batch).last_hidden_state
        expected = out.last_hidden_state if clip == LAYERS else full.norm(out.hidden_states[clip])
        assert torch.allclose(cut[mask], expected[mask], atol=1e-5), clip


def test_unneeded_tensors_are_never_touched(checkpoints, full_outputs, tmp_path):
    """A checkpoint holding only embedding + first CLIP layers + norm loads the same truncated model."""
    whole = checkpoints["whole"]
    stripped = tmp_path / "stripped"
    stripped.mkdir()
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        shutil.copy(whole / name, stripped / name)
    tensors = load_file(whole / "model.safetensors")
    save_file({k: v for k, v in tensors.items() if _needed(k, CLIP)}, stripped / "model.safetensors")

    _, batch, out = full_outputs
    with torch.no_grad():
        a = load_truncated(stripped, CLIP)(**batch).last_hidden_state
        b = load_truncated(whole, CLIP)(**batch).last_hidden_state
    assert torch.equal(a, b)
    with pytest.raises(ModelError, match="layers.2"):
        load_truncated(stripped, CLIP + 1)


def test_sharded_checkpoint_loads_without_the_unneeded_shards(checkpoints, full_outputs, tmp_path):
    """Shards holding only deeper layers can be deleted: the loader never opens them."""
    sharded = tmp_path / "sharded"
    shutil.copytree(checkpoints["sharded"], sharded)
    weight_map = json.loads((sharded / "model.safetensors.index.json").read_text())["weight_map"]
    by_file: dict[str, list[str]] = {}
    for key, file in weight_map.items():
        by_file.setdefault(file, []).append(key)
    removed = [f for f, keys in by_file.items() if not any(_needed(k, CLIP) for k in keys)]
    assert removed, "the shard size should put deeper layers in shards of their own"
    for file in removed:
        (sharded / file).unlink()
    _, batch, out = full_outputs
    with torch.no_grad():
        a = load_truncated(sharded, CLIP)(**batch).last_hidden_state
        b = load_truncated(checkpoints["whole"], CLIP)(**batch).last_hidden_state
    assert torch.allclose(a, b, atol=0)


def test_clip_layer_beyond_the_model_is_refused(checkpoints):
    with pytest.raises(ModelError, match=f"clip_layer {LAYERS + 1} exceeds the model's {LAYERS} decoder layers"):
        load_truncated(checkpoints["whole"], LAYERS + 1)


def test_dtype_is_applied_to_the_layers_and_the_embedding_table_stays_float32(checkpoints):
    model = load_truncated(checkpoints["whole"], 1, dtype=torch.bfloat16)
    table = model.get_input_embeddings().weight
    assert table.dtype == torch.float32
    assert {p.dtype for p in model.parameters() if p is not table} == {torch.bfloat16}
    assert not any(p.device.type == "meta" for p in model.parameters())
    full = load_truncated(checkpoints["whole"], 1)
    assert torch.equal(table, full.get_input_embeddings().weight)  # the table is not rounded
    ids = torch.tensor([[5, 9, 14, 2]])
    # called with token ids, the layers get their own dtype (a hook casts the lookup)
    out = model(input_ids=ids).last_hidden_state
    assert out.dtype == torch.bfloat16
    assert torch.allclose(out.float(), full(input_ids=ids).last_hidden_state, atol=0.1, rtol=0.05)


def test_pickled_weights_are_not_loaded(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "pytorch_model.bin").write_bytes(b"\x80\x04not really a pickle")
    with pytest.raises(ModelError, match="no .safetensors weights"):
        Checkpoint.open(tmp_path)


def test_missing_tensor_names_are_reported(checkpoints):
    checkpoint = Checkpoint.open(checkpoints["whole"])
    with pytest.raises(ModelError, match="not in the checkpoint"):
        checkpoint.read(["model.layers.99.mlp.up_proj.weight"])
    with pytest.raises(ModelError, match="no tensor named like"):
        checkpoint.find(("does_not_exist.weight",))
    assert checkpoint.bytes_read == 0


# --- finding models ------------------------------------------------------------------------------


def test_resolve_a_local_folder(checkpoints):
    assert resolve_model(str(checkpoints["whole"])) == checkpoints["whole"]


def test_resolve_folder_without_config(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(ModelError, match="no config.json"):
        resolve_model(str(tmp_path))


def test_resolve_a_file_instead_of_a_folder(tmp_path):
    path = tmp_path / "weights.safetensors"
    path.write_bytes(b"x")
    with pytest.raises(ModelError, match="expected a model folder, got a file"):
        resolve_model(str(path))


def test_resolve_unknown_hub_id_offline_is_one_clear_error(monkeypatch):
    """Offline (the tests' HF_HUB_OFFLINE=1) and not cached: one error naming the id and the variable."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    name = "daar-test-nobody/definitely-not-a-cached-model"
    with pytest.raises(ModelError) as caught:
        resolve_model(name)
    message = str(caught.value)
    assert f"model {name!r} is not in the Hugging Face cache" in message
    assert "HF_HUB_OFFLINE=1" in message and "forbids downloading it" in message
    assert "smollm2-135m-instruct" in message  # points at the built-in


def test_offline_argument_wins_over_an_online_environment(monkeypatch):
    """`offline=True` (what `daar --offline` amounts to) never reaches the network, whatever the
    environment says: with the variables unset the answer is still the offline error, at once."""
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    with pytest.raises(ModelError, match="forbids downloading it"):
        resolve_model("daar-test-nobody/not-cached", offline=True)


def test_a_path_that_is_no_hub_id_says_so(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelError, match="neither a local folder nor a valid hub id"):
        resolve_model("./no/such//folder")


def test_a_cached_hub_model_resolves_offline(tiny_model, tmp_path, monkeypatch):
    """A hub id whose snapshot is in the Hugging Face cache (the layout huggingface_hub writes:
    models--OWNER--NAME/refs/main naming snapshots/<commit>/) loads offline from there."""
    import huggingface_hub.constants

    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--daar-test--tiny"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    shutil.copytree(tiny_model, repo / "snapshots" / commit)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    folder = resolve_model("daar-test/tiny")
    assert folder == repo / "snapshots" / commit
    assert load_truncated(folder, 1).config.num_hidden_layers == 1


def test_resolve_the_builtin_alias(tiny_model):
    # tiny_model already converted the packaged SmolLM2 (it borrows its tokenizer): this is the cached path
    folder = resolve_model("smollm2-135m-instruct")
    config = json.loads((folder / "config.json").read_text())
    assert config["num_hidden_layers"] == 30 and config["hidden_size"] == 576
    assert "quantization_config" not in config
    assert list(folder.glob("*.safetensors"))


def test_remote_code_is_refused_unless_asked(checkpoints, tmp_path):
    """A config that needs custom code is not executed by default."""
    folder = tmp_path / "custom"
    shutil.copytree(checkpoints["whole"], folder)
    config = json.loads((folder / "config.json").read_text())
    config["model_type"] = "daar_test_custom_arch"
    config["auto_map"] = {"AutoConfig": "custom_code.CustomConfig", "AutoModel": "custom_code.CustomModel"}
    (folder / "config.json").write_text(json.dumps(config))
    marker = tmp_path / "EXECUTED"
    (folder / "custom_code.py").write_text(f"from pathlib import Path\nPath({str(marker)!r}).write_text('ran')\n")
    with pytest.raises(ValueError, match="trust_remote_code"):
        load_truncated(folder, CLIP)
    assert not marker.exists()


def test_auto_map_on_a_known_architecture_uses_the_library_code(checkpoints, tmp_path):
    folder = tmp_path / "with_auto_map"
    shutil.copytree(checkpoints["whole"], folder)
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {"AutoModel": "custom_code.CustomModel"}
    (folder / "config.json").write_text(json.dumps(config))
    marker = tmp_path / "EXECUTED"
    (folder / "custom_code.py").write_text(f"from pathlib import Path\nPath({str(marker)!r}).write_text('ran')\n")
    model = load_truncated(folder, CLIP)
    assert type(model).__module__.startswith("transformers.models.")
    assert not marker.exists()


def test_fingerprint_follows_config_and_weights(checkpoints, tmp_path):
    folder = tmp_path / "copy"
    shutil.copytree(checkpoints["whole"], folder)
    before = fingerprint(folder)
    assert fingerprint(folder) == before and len(before) == 16
    config = json.loads((folder / "config.json").read_text())
    config["rms_norm_eps"] = 1e-3
    (folder / "config.json").write_text(json.dumps(config))
    assert fingerprint(folder) != before


def test_fingerprint_follows_tokenizer_template_and_same_size_weights(checkpoints, tmp_path):
    folder = tmp_path / "copy"
    shutil.copytree(checkpoints["whole"], folder)
    before = fingerprint(folder)
    (folder / "README.md").write_text("docs do not change the model")
    assert fingerprint(folder) == before
    (folder / "chat_template.jinja").write_text("{{ messages }}")
    with_template = fingerprint(folder)
    assert with_template != before
    tokenizer = folder / "tokenizer_config.json"
    tokenizer.write_text(tokenizer.read_text().replace("}", ', "model_max_length": 77}', 1))
    assert fingerprint(folder) != with_template
    # the same bytes count, one value flipped, the mtime put back: content decides, not size or time
    weights = next(folder.glob("*.safetensors"))
    stat = weights.stat()
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    keyed = fingerprint(folder)
    weights.write_bytes(bytes(data))
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert fingerprint(folder) != keyed


def test_device_and_dtype_choice():
    assert pick_device("cpu") == "cpu"
    assert pick_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ModelError, match="no CUDA GPU"):
            pick_device("cuda")
    assert pick_dtype("auto", "cpu") == torch.float32
    assert pick_dtype("bfloat16", "cpu") == torch.bfloat16
    # the prober's "auto" takes bf16 on a CPU with bf16 units; an explicit dtype always wins
    assert prober_dtype("auto", "cpu") == (torch.bfloat16 if cpu_has_bf16() else torch.float32)
    assert prober_dtype("float32", "cpu") == torch.float32
    assert prober_dtype("float16", "cpu") == torch.float16
