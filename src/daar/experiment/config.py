"""The experiment's one typed configuration: which pool, methods, ratios and seeds, and how to tune and score.

Everything that changes a number in the results table lives here, so a cell's cache key can be
derived from this object alone. The `select:` and `tune:` sections are partial SelectConfig and
TuneConfig mappings: they are validated against those classes at load time, so a typo fails in a
second instead of after the first hour of selection.

Relative paths inside the file (pool, out, select.examples_file, eval.data_dir) are read from the
config file's folder, so a config works from any working directory.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from daar.config import DEFAULT_MODEL, Runtime, SelectConfig, load_yaml_file, runtime_of
from daar.errors import UserError
from daar.evaluate.settings import EvalSettings
from daar.experiment.heldout import HeldoutSettings
from daar.probe.examples import load_examples_file
from daar.read.hub import looks_like_hub_id
from daar.select.base import available_selectors
from daar.tune.settings import TuneConfig

# Set per cell by the experiment; a `select:` or `tune:` section may not fix them for all cells.
CELL_SELECT_KEYS = ("method", "model", "ratio", "count", "seed", "sample", "match_tokens")
# The runtime is the experiment's own (top of the file): every cell shares it, but for its seed.
RUNTIME_ONLY = ("device", "dtype", "cache_dir")
COEVOLVE = "coevolve"  # not a selector: rounds of DaaR selection and tuning (daar.coevolve)
_SELECT_PATH_KEYS = ("examples_file", "seeds_file")  # seeds_file: its old name


class ConfigError(UserError):
    """The experiment configuration is unusable; the message names the key."""


class MethodSpec(BaseModel):
    """A named selection method: a registered selector plus settings of its own (e.g. a strategy),
    so that one experiment can compare DaaR `overall` with DaaR `balanced`."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    method: str
    select: dict[str, Any] = Field(default_factory=dict)
    # method `coevolve` only: rounds, learner, examples (daar.coevolve.CoevolveConfig); the cell's ratio
    # is the total budget, spread over the rounds, and the experiment tunes (from the base, as for
    # every method) and evaluates the final selection, so `learner: continue` changes the probers only
    coevolve: dict[str, Any] = Field(default_factory=dict)
    # Another method of the experiment: each cell of this one takes as its token budget the training
    # tokens of that method's selection at the same ratio and seed (random at DaaR's token count).
    match_tokens: str | None = None
    # Selections per tuning seed, each drawn with a selection seed of its own (daar.experiment.cells.
    # selection_seed): `random` with draws 2 is two random draws tuned with the same seed, whose
    # difference is the study's noise floor (docs/EVIDENCE.md).
    draws: int = Field(1, ge=1)

    @model_validator(mode="after")
    def _coevolve_settings(self) -> MethodSpec:
        if self.coevolve and self.method != COEVOLVE:
            raise ValueError(f"methods: {self.name}: `coevolve:` settings belong to method {COEVOLVE!r}")
        allowed = {"rounds", "learner", "examples", "seeds"}  # seeds: the old name of examples
        extra = sorted(set(self.coevolve) - allowed)
        if extra:
            raise ValueError(f"methods: {self.name}: coevolve: {', '.join(extra)} not allowed here ({sorted(allowed)})")
        return self


class ExperimentConfig(Runtime):
    """Settings of `daar experiment`; see configs/experiment_cpu.yaml for a commented example.

    The runtime (daar.config.Runtime) is the cells' runtime: device, dtype and cache_dir as given,
    and each cell's seed from `seeds`; the experiment's own `seed` draws the `sample` sub-pool,
    before anything else, so every method sees the same rows. (The third seed, `eval.items_seed`,
    draws the benchmark items, the same for every model.)"""

    model_config = ConfigDict(extra="forbid")
    # A data file or datasets folder (relative to this file), or a hub dataset id (daar.read.hub)
    pool: Path
    split: str | None = None  # of a dataset id, a folder read by datasets.load_dataset, a DatasetDict
    subset: str | None = None
    sample: int | None = Field(None, ge=1)
    model: str = DEFAULT_MODEL
    # A selector name, or {name, method, select} for a selector with settings of its own.
    methods: list[str | MethodSpec] = Field(min_length=1)
    ratios: list[float] = Field(default_factory=lambda: [0.2], min_length=1)
    seeds: list[int] = Field(default_factory=lambda: [42], min_length=1)
    # torch CPU threads; on a shared, busy machine 1 can be several times faster than spinning threads.
    threads: int | None = Field(None, ge=1)
    # A pool field with true domains, to report each selection's domain mix; selectors never read it.
    domain_field: str | None = None
    # Cells computed at once, each in a process of its own. None: one at a time on a CPU (the cores
    # are better spent inside one cell), and on GPUs `daar.experiment.parallel.auto_parallel`.
    parallel: int | None = Field(None, ge=1)
    select: dict[str, Any] = Field(default_factory=dict)
    tune: dict[str, Any] = Field(default_factory=dict)
    eval: EvalSettings = Field(default_factory=EvalSettings)
    # Rows of the pool outside `sample` scored by their response NLL, grouped by a field no selector
    # reads (daar.experiment.heldout); with it, held-out macro NLL is the study's primary measure.
    heldout: HeldoutSettings | None = None
    out: Path | None = None

    @model_validator(mode="after")
    def _heldout_needs_sample(self) -> ExperimentConfig:
        if self.heldout is not None and self.sample is None:
            raise ValueError("heldout: rows are held out from the rows outside `sample`; set sample too")
        return self

    @field_validator("methods")
    @classmethod
    def _methods(cls, values: list[str | MethodSpec]) -> list[str | MethodSpec]:
        _no_repeats([v if isinstance(v, str) else v.name for v in values])
        for value in values:
            if isinstance(value, MethodSpec):
                fixed = [k for k in CELL_SELECT_KEYS + RUNTIME_ONLY if k in value.select]
                if fixed:
                    raise ValueError(f"methods: {value.name}: {', '.join(fixed)} set per cell by the experiment")
        return values

    @model_validator(mode="after")
    def _matched_methods(self) -> ExperimentConfig:
        """A `match_tokens` names another method of this experiment that has a budget of its own."""
        names = self.method_names
        for name in names:
            other = self.method_spec(name).match_tokens
            if other is None:
                continue
            if other not in names or other == name:
                raise ValueError(f"methods: {name}: match_tokens {other!r} must name another method of {names}")
            if self.method_spec(other).match_tokens is not None:
                raise ValueError(f"methods: {name}: match_tokens {other!r} matches tokens itself; match its source")
        return self

    @model_validator(mode="after")
    def _merged_methods(self) -> ExperimentConfig:
        """Each method's settings are checked merged with the shared `select:` section, as its cells
        will use them (a per-method strategy may need a target given once for all)."""
        for name in self.method_names:
            spec = self.method_spec(name)
            try:
                SelectConfig.model_validate(merge(self.select, spec.select))
            except ValidationError as err:
                raise ValueError("; ".join(_describe(e, f"methods.{name}.select") for e in err.errors())) from None
        return self

    @property
    def method_names(self) -> list[str]:
        return [m if isinstance(m, str) else m.name for m in self.methods]

    def method_spec(self, name: str) -> MethodSpec:
        for value in self.methods:
            spec = MethodSpec(name=value, method=value) if isinstance(value, str) else value
            if spec.name == name:
                return spec
        raise KeyError(name)

    @field_validator("seeds")
    @classmethod
    def _unique(cls, values: list[Any]) -> list[Any]:
        return _no_repeats(values)

    @field_validator("ratios")
    @classmethod
    def _ratios(cls, values: list[float]) -> list[float]:
        bad = [v for v in values if not 0 < v <= 1]
        if bad:
            raise ValueError(f"every ratio must be in (0, 1], got {bad}")
        if len(set(values)) != len(values):
            raise ValueError(f"repeated ratios in {values}")
        return values

    @field_validator("select")
    @classmethod
    def _select(cls, values: dict[str, Any]) -> dict[str, Any]:
        fixed = [k for k in CELL_SELECT_KEYS if k in values]
        if fixed:
            raise ValueError(f"{', '.join(fixed)} set per cell by the experiment (use methods/ratios/seeds/model)")
        _runtime_at_top(values, "select")
        _check_section(SelectConfig, values, "select")
        return values

    @field_validator("tune")
    @classmethod
    def _tune(cls, values: dict[str, Any]) -> dict[str, Any]:
        if "seed" in values:
            raise ValueError("seed is set per cell by the experiment (use seeds)")
        _runtime_at_top(values, "tune")
        _check_section(TuneConfig, values, "tune")
        return values

    def select_config(self, method: str, ratio: float, seed: int, matched: Path | None = None) -> SelectConfig:
        """The SelectConfig of one cell: the `select:` overrides plus the cell's method, ratio and
        selection seed (and, for a method that matches tokens, the run folder whose selection sets
        its budget)."""
        spec = self.method_spec(method)
        data = {**runtime_of(self), **merge(self.select, spec.select)}
        data |= {"method": "daar" if spec.method == COEVOLVE else spec.method, "model": self.model, "ratio": ratio}
        if matched is not None:
            data["match_tokens"] = str(matched)
        return SelectConfig.model_validate(data | {"seed": seed})

    def tune_config(self, seed: int) -> TuneConfig:
        """The TuneConfig of one cell: the `tune:` overrides plus the cell's seed."""
        return TuneConfig.model_validate({**runtime_of(self), **self.tune, "seed": seed})

    def result_dict(self) -> dict[str, Any]:
        """The settings as plain JSON values, for the manifest."""
        return json.loads(self.model_dump_json())


def _runtime_at_top(values: dict[str, Any], section: str) -> None:
    wrong = [k for k in RUNTIME_ONLY if k in values]
    if wrong:
        raise ValueError(f"{section}.{wrong[0]}: set it once, at the top of the file (every cell shares it)")


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """`override` on top of `base`, nested mappings merged key by key (a method's `heads: {lr: ..}`
    keeps the shared `heads:` keys it does not name)."""
    merged = dict(base)
    for key, value in override.items():
        merged[key] = (
            merge(merged[key], value) if isinstance(value, dict) and isinstance(merged.get(key), dict) else value
        )
    return merged


def _no_repeats(values: list[Any]) -> list[Any]:
    repeated = sorted({str(v) for v in values if values.count(v) > 1})
    if repeated:
        raise ValueError(f"repeated entries: {', '.join(repeated)}")
    return values


def _check_section(model: type[BaseModel], values: dict[str, Any], section: str) -> None:
    """Validate a partial section against its full class, naming the offending key in the error."""
    try:
        model.model_validate(values)
    except ValidationError as err:
        raise ValueError("; ".join(_describe(e, section) for e in err.errors())) from None


def _describe(error: Any, prefix: str = "") -> str:
    where = ".".join(str(part) for part in (prefix, *error["loc"]) if part != "")
    message = "unknown key" if error["type"] == "extra_forbidden" else error["msg"]
    return f"{where}: {message}" if where else message


def load_experiment(path: Path, out: Path | None = None) -> ExperimentConfig:
    """Read and validate a YAML experiment file; `out` (from the CLI) replaces the file's `out`.

    Raises ConfigError with every problem on one line, each prefixed by its key (`tune.lr: ...`).
    """
    path = Path(path)
    try:
        data = load_yaml_file(path)
    except UserError as err:
        raise ConfigError(str(err)) from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: an experiment config must be a mapping of settings")
    base = path.resolve().parent
    _resolve_paths(data, base)
    try:
        config = ExperimentConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(f"{path}: " + "; ".join(_describe_top(e) for e in err.errors())) from None
    if out is not None:
        config = config.model_copy(update={"out": Path(out)})
    _check_methods([config.method_spec(n).method for n in config.method_names], path)
    _check_examples_file(config, path)
    return config


def _describe_top(error: Any) -> str:
    # errors raised inside a section validator already carry the key path in their message
    if error["type"] == "value_error" and error["loc"] and error["loc"][0] in ("select", "tune"):
        return str(error["msg"]).removeprefix("Value error, ")
    return _describe(error)


def _resolve_paths(data: dict[str, Any], base: Path) -> None:
    """Make the file's relative paths relative to its own folder (in place; other values untouched)."""
    def fix(value: Any) -> Any:
        if isinstance(value, str) and value and not Path(value).expanduser().is_absolute():
            return str(base / value)
        return value

    if "pool" in data:  # a hub dataset id stays one; a path, even a missing one, is the file's folder's
        pool = data["pool"]
        hub_id = isinstance(pool, str) and looks_like_hub_id(pool) and not (base / pool).exists()
        data["pool"] = pool if hub_id else fix(pool)
    if "out" in data:
        data["out"] = fix(data["out"])
    sections = [("select", data), ("eval", data)]
    sections += [("select", m) for m in data.get("methods") or [] if isinstance(m, dict)]
    for section, holder in sections:
        keys = _SELECT_PATH_KEYS if section == "select" else ("data_dir",)
        if isinstance(holder.get(section), dict):
            for key in keys:
                if key in holder[section]:
                    holder[section][key] = fix(holder[section][key])


def _check_methods(methods: list[str], path: Path) -> None:
    """Every method must name a registered selector (importing them is why this is not a validator)."""
    known = [*available_selectors(), COEVOLVE]
    unknown = [m for m in methods if m not in known]
    if unknown:
        raise ConfigError(f"{path}: methods: unknown {', '.join(map(repr, unknown))}; known: {', '.join(known)}")


def _check_examples_file(config: ExperimentConfig, path: Path) -> None:
    """Each examples file must exist and match its domains now, not when the first cell reads it."""
    checked: set[tuple[str, str]] = set()
    for name in config.method_names:
        settings = config.select_config(name, config.ratios[0], config.seeds[0])
        key = (str(settings.examples_file), json.dumps([d.model_dump() for d in settings.domains]))
        if settings.examples_file is None or key in checked:
            continue
        checked.add(key)
        where = f"methods.{name}.select" if "examples_file" in config.method_spec(name).select else "select"
        try:
            load_examples_file(Path(settings.examples_file), list(settings.domains))
        except UserError as err:
            raise ConfigError(f"{path}: {where}.examples_file: {err}") from None
