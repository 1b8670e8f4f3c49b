"""One typed configuration for a selection run, loadable from YAML and overridable from the CLI.

Everything that changes a result lives here, so a run's manifest (and every stage's cache key) can
be derived from this object alone.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from daar.errors import UserError

DEFAULT_MODEL = "smollm2-135m-instruct"


def renamed(data: Any, names: dict[str, str], where: str) -> Any:
    """`data` with the old spelling of each key (`seeds`, `seeds_file`: a domain's example rows were
    once called its seeds, which read like random seeds) moved to the new one, with a warning; the
    old spellings are accepted for one release."""
    if not isinstance(data, dict):
        return data
    found = [old for old in names if old in data]
    if not found:
        return data
    data = dict(data)
    for old in found:
        new = names[old]
        if new in data:
            raise ValueError(f"{where}: give {new!r} only (its old name {old!r} is given too)")
        data[new] = data.pop(old)
        message = f"{where}: {old!r} is now called {new!r}; the old name goes in the next release"
        warnings.warn(message, FutureWarning, stacklevel=4)
    return data


def old_option(value: Any, old_value: Any, old: str, new: str) -> Any:
    """A command-line option given under its old name: its value, with the same warning as `renamed`."""
    if old_value is None:
        return str(value) if isinstance(value, Path) else value
    if value is not None:
        raise UserError(f"give {new} only (its old name {old} is given too)")
    warnings.warn(f"{old} is now called {new}; the old name goes in the next release", FutureWarning, stacklevel=2)
    return str(old_value) if isinstance(old_value, Path) else old_value


class ExampleRow(BaseModel):
    model_config = ConfigDict(extra="forbid")
    instruction: str = Field(min_length=1)
    input: str = ""
    output: str = Field(min_length=1)


class Domain(BaseModel):
    """A domain the prober should know: a name, a one-line description, optional example rows."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1)
    description: str = Field(min_length=1)
    examples: list[ExampleRow] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _old_names(cls, data: Any) -> Any:
        return renamed(data, {"seeds": "examples"}, "domain")

    @field_validator("name")
    @classmethod
    def _file_name(cls, name: str) -> str:
        """Generated examples are saved as <name>.json in a folder: the name must stay a file name in it."""
        if name in (".", "..") or any(c in name for c in "/\\\x00"):
            raise ValueError(f"{name!r} cannot name a file (examples are saved as <name>.json): no '/', '\\' or '..'")
        return name


DEFAULT_DOMAINS: list[Domain] = [
    Domain(
        name="common_sense",
        description="everyday knowledge about the world, people, language and general facts",
    ),
    Domain(
        name="reasoning",
        description="step-by-step logical inference, deduction and multi-hop question answering",
    ),
    Domain(
        name="mathematics",
        description="arithmetic, algebra and word problems solved with numbers and equations",
    ),
    Domain(
        name="coding",
        description="writing, explaining and fixing computer programs and algorithms",
    ),
]


class FieldMap(BaseModel):
    """Names of the input fields, for pools whose columns are not called the Alpaca way."""

    model_config = ConfigDict(extra="forbid")
    id: str = "id"
    instruction: str = "instruction"
    input: str = "input"
    output: str = "output"
    messages: str = "messages"
    conversations: str = "conversations"


class SynthesisConfig(BaseModel):
    """Example generation (docs/METHOD.md, step 3). Counts, threshold and sampling are the paper's; the number
    of rounds, candidates per round and answer length bound the cost. A round's cost on a CPU is
    mostly its sequential decoding steps, so the default is one warm-up round of 20 candidates per
    domain and answers of at most 64 tokens; rounds showing accepted pairs (`max_rounds`) run only
    for domains short of `min_pairs`, since on the demo they mostly yielded copies of what they
    showed (daar.probe.examples.ExampleWriter.write). Measured with SmolLM2-135M on the demo,
    benchmarks/examples_stage.py: the earlier five rounds of 6 with 96-token answers took 1,154
    forward passes for 20 accepted pairs."""

    model_config = ConfigDict(extra="forbid")
    warmup_pairs: int = Field(5, ge=1)
    pairs_per_domain: int = Field(10, ge=1)
    similarity_threshold: float = Field(0.85, gt=0, le=1)
    top_p: float = 0.95
    temperature: float = 0.9
    top_k: int = Field(50, ge=0)  # transformers' generate default, which the authors' calls used; 0: off
    max_new_tokens: int = 64
    candidates_per_round: int = Field(20, ge=1)
    max_rounds: int = Field(0, ge=0)  # rounds showing accepted pairs for every domain short of the target
    min_pairs: int = Field(3, ge=1)


class HeadConfig(BaseModel):
    """Training of the domain probe and the reward model (docs/METHOD.md, steps 5 and 7).

    Default: Adam, lr 1e-4, batches of 8, epochs until the validation loss (on the pseudo-labels,
    no true label involved) has not improved for `patience` epochs, at most `epochs`; the best
    epoch's weights are kept. The authors' schedule (lr 1e-5, one epoch, batch 1: configs/paper.yaml)
    leaves a 135M prober's probe under-trained, and its entropy then tracks a domain rather than
    the boundaries between domains: the top 20% fell on one or two domains (docs/BALANCE.md).
    """

    model_config = ConfigDict(extra="forbid")
    lr: float = Field(1e-4, gt=0)
    epochs: int = Field(20, ge=1)
    batch_size: int = Field(8, ge=1)
    patience: int | None = Field(2, ge=1)  # None: run all epochs (the authors' fixed schedule)
    val_fraction: float = Field(0.03, ge=0, lt=1)
    max_reward_rows: int = Field(5000, ge=1)


PAPER_HEADS = HeadConfig(lr=1e-5, epochs=1, batch_size=1, patience=None)
# Head schedules by name: `heads: NAME` in a config file, `--set heads=NAME` on the command line.
HEAD_SCHEDULES: dict[str, HeadConfig] = {
    "default": HeadConfig(),
    "paper": PAPER_HEADS,
    # Batches of 64 at lr 2.8e-4 (1e-4 x sqrt(64 / 8)). A 7B-wide head's step costs one optimizer
    # pass over its 58 M parameters whatever the batch, so on a CPU only larger batches make an
    # epoch short: an estimated 240 s for both heads at width 3,584 on 2 cores, against 960 s.
    # On SmolLM2's 16k pool (5 seeds) it shares 70% of the default's selection at the same seed,
    # more than the default shares with itself at another seed (60%), and keeps the same domain
    # balance (docs/RESULTS.md, "Heads at 7B width on CPU").
    "batched": HeadConfig(batch_size=64, lr=2.8e-4),
}


class Runtime(BaseModel):
    """Where and how a command runs. Every command's settings are made of these four and their own
    (select, tune, experiment, co-evolution: one definition), and a command that runs others hands
    them its own (`runtime_of`), so a device or a seed is set once, at the top of a config."""

    model_config = ConfigDict(extra="forbid")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # auto: bf16 on GPUs; on CPUs bf16 for the prober where the CPU has bf16 units, fp32 for tuning
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    seed: int = 42
    # Features, fitted stages and token ids, keyed by content; None: the shared user cache
    # (daar.utils.cache.shared_cache). Tuning and evaluation keep no cache of their own.
    cache_dir: Path | None = None


RUNTIME_KEYS = tuple(Runtime.model_fields)


def runtime_of(settings: Runtime, **changes: Any) -> dict[str, Any]:
    """The runtime part of `settings` as a mapping (with `changes`), to hand to the settings of a
    command it runs."""
    return {key: getattr(settings, key) for key in RUNTIME_KEYS} | changes


class SelectConfig(Runtime):
    """Settings of `daar select`. A YAML file may hold any subset of these keys."""

    model_config = ConfigDict(extra="forbid")
    method: str = "daar"
    model: str = DEFAULT_MODEL
    # A LoRA adapter trained on `model`: probe with the tuned model (co-evolution), merged into the
    # prober's layers only; model-scored baselines score with base + adapter.
    adapter: Path | None = None
    trust_remote_code: bool = False
    domains: list[Domain] = Field(default_factory=lambda: [d.model_copy() for d in DEFAULT_DOMAINS])
    examples_file: Path | None = None
    clip_layer: int = Field(3, ge=1)
    max_length: int = Field(512, ge=8)
    probe_size: int = Field(5000, ge=2)
    ratio: float | None = Field(0.2, gt=0, le=1)
    count: int | None = Field(None, ge=1)
    strategy: Literal["overall", "balanced", "customized"] = "balanced"
    shares: Literal["proportional", "equal"] = "proportional"  # balanced: budget per pseudo-domain
    target: str | None = None
    target_fraction: float = Field(0.5, gt=0, le=1)
    other_fraction: float = Field(0.1, ge=0, le=1)
    batch_tokens: int | None = Field(None, ge=64)  # None: sized from the model (embed.auto_batch_tokens)
    sample: int | None = Field(None, ge=1)
    fields: FieldMap = Field(default_factory=FieldMap)
    synthesis: SynthesisConfig = Field(default_factory=SynthesisConfig)
    heads: HeadConfig = Field(default_factory=HeadConfig)
    # DaaR fits averaged into one score: each member is a whole fit with a seed of its own (probe
    # rows, clusters, probe head, reward head); member 0 uses `seed`, so 1 is the plain method.
    ensemble: int = Field(1, ge=1)
    # "length": rank by the reward minus what log(row length) explains inside each pseudo-domain
    # (a line fitted on the probe set), since the reward favours short rows (docs/EVIDENCE.md).
    reward_adjust: Literal["none", "length"] = "none"
    # `balanced` only: split each pseudo-domain into this many sub-clusters (k-means on e(x) of the
    # fit's rows) and give each its share of the domain's budget, the reward ranking inside each, so
    # a sub-population the probe is sure of (a templated source, whose entropy is near 0) keeps its
    # share instead of losing every row to the hard top-k (docs/EVIDENCE.md, section 5). 0: off.
    subclusters: int = Field(0, ge=0)
    # A budget in the learner's training tokens instead of rows (ratio/count): the method's rows
    # are taken in its own order while they fit. `match_tokens` takes the budget from another
    # run's selected.jsonl, counted the same way.
    budget_tokens: int | None = Field(None, ge=1)
    match_tokens: Path | None = None

    @model_validator(mode="before")
    @classmethod
    def _old_names(cls, data: Any) -> Any:
        return renamed(data, {"seeds_file": "examples_file"}, "settings")

    @field_validator("heads", mode="before")
    @classmethod
    def _named_heads(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        if value not in HEAD_SCHEDULES:
            raise ValueError(f"unknown head schedule {value!r}; known: {', '.join(HEAD_SCHEDULES)}")
        return HEAD_SCHEDULES[value].model_copy()

    @model_validator(mode="after")
    def _check(self) -> SelectConfig:
        names = [d.name for d in self.domains]
        if len(names) < 2:
            raise ValueError("at least two domains are needed (K >= 2)")
        if len(set(names)) != len(names):
            raise ValueError(f"domain names must be unique, got {names}")
        if self.budget_tokens is not None and self.match_tokens is not None:
            raise ValueError("give either budget_tokens or match_tokens, not both")
        if self.subclusters and self.strategy != "balanced":
            raise ValueError("subclusters split the pseudo-domains of strategy 'balanced' only")
        if self.strategy == "customized":
            if self.target is None:
                raise ValueError("strategy 'customized' needs a target domain (--target NAME)")
            if self.target not in names:
                raise ValueError(f"target {self.target!r} is not one of the domains {names}")
        return self

    def result_dict(self) -> dict[str, Any]:
        """The settings as plain JSON values, for manifests and cache keys."""
        return json.loads(self.model_dump_json())


def load_domains(path: Path) -> list[Domain]:
    """Domains from a YAML/JSON file: a list, or a mapping with a `domains` list."""
    data = load_yaml_file(path)
    if isinstance(data, dict) and "domains" in data:
        data = data["domains"]
    if not isinstance(data, list):
        raise UserError(f"{path}: expected a list of domains (name, description, optional examples)")
    try:
        return [Domain.model_validate(item) for item in data]
    except ValidationError as err:
        raise UserError(f"{path}: {err.errors()[0]['loc']}: {err.errors()[0]['msg']}") from None


def load_config(path: Path | None, overrides: dict[str, Any] | None = None) -> SelectConfig:
    """Merge a YAML file (optional) with CLI overrides (dotted keys allowed) into one SelectConfig."""
    return SelectConfig.model_validate(set_dotted(load_settings_file(path), overrides or {}))


def load_settings_file(path: Path | None) -> dict[str, Any]:
    """The mapping of settings in a YAML/JSON file (empty without one); anything else is a UserError."""
    if path is None:
        return {}
    loaded = load_yaml_file(path)
    if not isinstance(loaded, dict):
        raise UserError(f"{path}: a config file must be a mapping of settings")
    return loaded


def set_dotted(data: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """`data` with each `a.b.c: value` of `overrides` set in its nested sections (None: left alone)."""
    for key, value in overrides.items():
        if value is None:
            continue
        node = data
        *parents, last = key.split(".")
        for part in parents:
            if node.get(part) is None:
                node[part] = {}
            node = node[part]
            if not isinstance(node, dict):
                raise UserError(f"setting {key!r}: {part!r} is not a section of settings")
        node[last] = value
    return data


def parse_set_option(items: list[str]) -> dict[str, Any]:
    """`--set heads.lr=1e-5` pairs; values are parsed as YAML scalars so numbers stay numbers."""
    result: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise UserError(f"--set expects KEY=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        try:
            result[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError as err:
            raise UserError(f"--set {item!r}: the value is not valid YAML ({err.problem})") from None
    return result


def load_yaml_file(path: Path) -> Any:
    """A YAML/JSON file's content; every way it can be unreadable is a UserError naming the file."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as err:
        raise UserError(f"cannot read {path}: {err.strerror or err}") from None
    except UnicodeDecodeError as err:
        raise UserError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise UserError(f"{path}: not valid YAML/JSON: {err}") from None


def prober_options(
    model: str | None,
    adapter: Path | None,
    examples_file: Path | None,
    clip_layer: int | None,
    probe_size: int | None,
    seed: int | None,
    max_length: int | None,
    device: str | None,
    dtype: str | None,
    trust_remote_code: bool,
) -> dict[str, Any]:
    """The SelectConfig keys of the options `select` and `fit` share (None: not given)."""
    return {
        "model": model,
        "adapter": str(adapter) if adapter else None,
        "examples_file": str(examples_file) if examples_file else None,
        "clip_layer": clip_layer,
        "probe_size": probe_size,
        "seed": seed,
        "max_length": max_length,
        "device": device,
        "dtype": dtype,
        "trust_remote_code": trust_remote_code or None,
    }


def build_settings(
    config: Path | None,
    set_: list[str] | None,
    field: list[str] | None,
    domains: Path | None,
    named: dict[str, Any],
) -> SelectConfig:
    """SelectConfig from a config file, --set overrides, --field mappings, a domains file and the
    named options (None = not given), in that order of precedence from low to high."""
    overrides: dict[str, Any] = {}
    overrides.update(parse_set_option(set_ or []))
    for item in field or []:
        key, sep, value = item.partition("=")
        if not sep or not value:
            raise UserError(f"--field expects NAME=COLUMN (e.g. instruction=prompt), got {item!r}")
        overrides[f"fields.{key}"] = value
    overrides.update({k: v for k, v in named.items() if v is not None})
    if domains is not None:
        overrides["domains"] = [d.model_dump() for d in load_domains(domains)]
    return load_config(config, overrides)
