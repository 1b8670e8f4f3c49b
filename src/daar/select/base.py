"""The one interface shared by DaaR and every baseline, and the registry that names them.

A selector is fitted on a pool (many need nothing), scores rows (higher = keep first) and selects
a number of them. Whatever features it needs come from the run's Context, so the prober reads each
row once however many selectors look at the pool.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import torch

from daar.config import ExampleRow, SelectConfig
from daar.embed import FeatureExtractor, Features, load_cached
from daar.embed.features import feature_files, features_from
from daar.errors import UserError
from daar.models import fingerprint, pick_device, pick_dtype, prober_dtype, resolve_model
from daar.models.adapter import adapter_fingerprint, check_adapter
from daar.models.files import tokenizer_fingerprint
from daar.read import Pool, Record
from daar.select.strategies import top_n
from daar.utils.cache import atomic_dir, code_version, read_json, stable_key, texts_key
from daar.utils.entry import CacheEntry, cached, cached_arrays
from daar.utils.progress import StageTimer

Scores = dict[str, np.ndarray]  # "score" is required; other columns go to scores.parquet
FITTED_SETTINGS = "select.json"  # the SelectConfig of a fit, beside its state: what scoring needs


@dataclass
class Context:
    """What the selectors of one run share: settings, the resolved model and the feature cache."""

    config: SelectConfig
    cache_dir: Path
    timer: StageTimer = field(default_factory=StageTimer)
    _model_dir: Path | None = None
    _fingerprint: str | None = None
    _prober: str | None = None
    _extractor: FeatureExtractor | None = field(default=None, repr=False)
    _features: dict[Path, Features] = field(default_factory=dict, repr=False)

    @property
    def model_dir(self) -> Path:
        if self._model_dir is None:
            self._model_dir = resolve_model(self.config.model)
        return self._model_dir

    @property
    def model_fingerprint(self) -> str:
        """The model folder's content key, looked up once per run (every stage key holds it)."""
        if self._fingerprint is None:
            self._fingerprint = fingerprint(self.model_dir)
        return self._fingerprint

    @property
    def prober_fingerprint(self) -> str:
        """What the features depend on: the model's content key, plus the adapter's when one is set
        (checked once to belong to this base: a mismatch is a clear error, not wrong features)."""
        if self._prober is None:
            adapter = self.config.adapter
            key = self.model_fingerprint
            if adapter is not None:
                check_adapter(adapter, self.model_dir, self.config.model)
                key = f"{key}+lora-{adapter_fingerprint(adapter)}"
            self._prober = key
        return self._prober

    @property
    def device(self) -> str:
        return pick_device(self.config.device)

    @property
    def dtype(self) -> torch.dtype:
        return pick_dtype(self.config.dtype, self.device)

    @property
    def prober_dtype(self) -> torch.dtype:
        """The prober's and the example writer's dtype: bf16 on CPUs that have it (see prober_dtype)."""
        return prober_dtype(self.config.dtype, self.device)

    def extractor(self) -> FeatureExtractor:
        if self._extractor is None:
            cfg = self.config
            _ = self.prober_fingerprint  # checks that the adapter (if any) belongs to this base first
            self._extractor = FeatureExtractor(
                self.model_dir,
                cfg.clip_layer,
                max_length=cfg.max_length,
                batch_tokens=cfg.batch_tokens,
                device=self.device,
                dtype=self.prober_dtype,
                trust_remote_code=cfg.trust_remote_code,
                adapter=cfg.adapter,
            )
        return self._extractor

    def features_dir(self, texts: list[str]) -> Path:
        cfg = self.config
        key = stable_key(
            self.prober_fingerprint,
            cfg.clip_layer,
            cfg.max_length,
            str(self.prober_dtype),
            texts_key(texts),
            code_version("daar.embed.features", "daar.models.loader", "daar.models.files"),
        )
        return self.cache_dir / "features" / key

    def features(self, pool: Pool) -> Features:
        """e(x) and f(x) of every row, computed once per pool and kept on disk."""
        return self.text_features(pool.texts, "features", "prober features")

    def text_features(self, texts: list[str], stage: str, description: str) -> Features:
        """The features of `texts`, read once per run: a second use (scores after the fit, the
        analysis) gets the same arrays, whatever `daar cache` removed meanwhile."""
        folder = self.features_dir(texts)
        with self.timer.stage(stage) as flag:
            if folder in self._features:
                flag["cached"] = True
                return self._features[folder]

            def compute() -> Features:
                extractor = self.extractor()
                return extractor.extract(texts, folder, description=description, ids=self.token_ids(texts, extractor))

            # a shared cache (parallel cells, analyze, map, select --cache-dir): one writer per feature
            # folder; a process that waited for another's finds the features done, and an unfinished
            # folder resumes at its first unfinished row
            found, flag["cached"] = cached(
                CacheEntry.at(folder),
                feature_files(folder),
                lambda contents: features_from(folder, contents),
                compute,
                description,
                resume=True,
            )
            self._features[folder] = found
            return found

    def cached_features(self, texts: list[str]) -> Features | None:
        """The features of `texts` if this run or the cache has them (never computed here)."""
        folder = self.features_dir(texts)
        found = self._features.get(folder)
        return found if found is not None else load_cached(folder)

    def token_ids(self, texts: list[str], extractor: FeatureExtractor) -> list[list[int]]:
        """The prober's token ids of `texts`, cached by the texts' content and the tokenizer's files (not
        the weights): a pool probed again with another layer count, dtype or adapter reuses them."""
        if not texts:
            return []
        key = stable_key(
            tokenizer_fingerprint(self.model_dir),
            self.config.max_length,
            texts_key(texts),
            code_version("daar.embed.features"),
        )
        path = self.cache_dir / "token_ids" / f"{key}.safetensors"

        def compute() -> dict[str, np.ndarray]:
            ids = extractor.tokenize(texts)
            lengths = np.array([len(x) for x in ids], dtype=np.int64)
            flat = np.fromiter((t for x in ids for t in x), dtype=np.int64, count=int(lengths.sum()))
            return {"ids": flat, "ends": np.cumsum(lengths)}

        arrays = cached_arrays(path, compute, "token ids")[0]
        flat, ends = arrays["ids"].tolist(), arrays["ends"].tolist()
        return [flat[start:end] for start, end in zip([0, *ends[:-1]], ends, strict=True)]

    def stage_path(self, name: str, *key_parts: object) -> Path:
        """Where a stage's result lives: its name plus a digest of everything it depends on."""
        return self.cache_dir / "stages" / f"{name}-{stable_key(*key_parts)}"


@dataclass
class Artifacts:
    """What a fitted selector leaves for a run's outputs besides its scores: its domain examples (the
    rows, and the cache folder of generated ones with their raw answers, copied to RUN_DIR/examples)
    and entries for the manifest (fitted metrics); empty by default."""

    examples_folder: Path | None = None
    examples: dict[str, list[ExampleRow]] = field(default_factory=dict)
    manifest: dict[str, Any] = field(default_factory=dict)
    example_files: dict[str, bytes] | None = None  # examples_folder's files as read (and checked) by the fit


class Selector:
    """The contract every selection method keeps, on every path: a pool in memory (`daar select`),
    block by block (`daar fit` / `daar score` / `daar select --scores`, locally or on Ray) and the
    rounds of co-evolution. None of those paths knows any one method.

    - `fit(pool, ctx)`: learn whatever the method needs from a pool or a sample of one (most
      baselines: nothing); returns self.
    - `score_block(records, features, ctx)`: the scores of some rows of a pool, without the others:
      `score` required (higher = kept first), every other column goes to scores.parquet.
      `features` (the prober's e(x) and f(x) of those rows) is given when `needs_features`.
    - `score(pool, ctx)`: every row's scores; by default `score_block` over all rows. A method whose
      scores depend on the whole pool (a draw, a greedy pass) overrides it and sets `cannot_stream`
      to say why it cannot score block by block; block-by-block commands refuse it with that reason.
    - `cut(scores, n, config)`: exactly min(n, rows) distinct row indices from the scores alone (no
      rows, no texts), so a cut over the scores of a whole pool's blocks is the in-memory one;
      `select(pool, ctx, n, scores)` is `cut` unless a method needs the rows (greedy methods).
    - `save(folder)` / `load(folder)`: the fitted state, with the settings beside it (select.json,
      written by the caller); `save` returns False when the method leaves nothing to reuse.
    - `check_context(ctx)`: refuse a context the fitted state was not made for (another prober).
    - `artifacts()`: domain examples and manifest entries of the fitted state (default: none).

    Subclasses set `name` (the registry key) and document their source paper and settings.
    """

    name: ClassVar[str]
    needs_features: ClassVar[bool] = False
    cannot_stream: ClassVar[str | None] = None

    def fit(self, pool: Pool, ctx: Context) -> Self:
        return self

    def score(self, pool: Pool, ctx: Context) -> Scores:
        """Per-row scores of the whole pool; higher means selected earlier."""
        return self.score_block(pool.records, ctx.features(pool) if self.needs_features else None, ctx)

    def score_block(self, records: list[Record], features: Features | None, ctx: Context) -> Scores:
        """Scores of `records` (a block of a pool), from their `features` when `needs_features`."""
        raise NotImplementedError(f"{self.name} scores whole pools only: {self.cannot_stream}")

    def cut(self, scores: Scores, n: int, config: SelectConfig) -> np.ndarray:
        """The `n` rows with the top scores, ties broken by row order."""
        return top_n(scores["score"], n)

    def select(self, pool: Pool, ctx: Context, n: int, scores: Scores) -> np.ndarray:
        return self.cut(scores, n, ctx.config)

    def save(self, folder: Path) -> bool:
        """Nothing to save for a method without fitted state: a block-by-block run of a method that
        streams still gets the folder (its settings go beside), the others nothing."""
        if self.cannot_stream is not None:
            return False
        with atomic_dir(Path(folder)):
            pass
        return True

    @classmethod
    def load(cls, folder: Path) -> Self:
        return cls()

    def check_context(self, ctx: Context) -> None:
        """Raise ValueError when `ctx` is not what the fitted state was made with (default: any is)."""

    def artifacts(self) -> Artifacts:
        return Artifacts()


def load_selector(folder: Path) -> Selector:
    """The fitted selector in `folder` (a `daar fit` output or a run's fitted/), as the method named in
    its settings (select.json) saved it."""
    path = Path(folder) / FITTED_SETTINGS
    if not path.is_file():
        raise UserError(f"{folder}: not a fitted folder (no {FITTED_SETTINGS}); make one with `daar fit`")
    method = str(read_json(path).get("method", "daar"))
    _load_builtin_selectors()
    if method not in REGISTRY:
        raise UserError(f"{path}: method {method!r} is not known to this daar")
    return REGISTRY[method].load(Path(folder))


def streams(method: str) -> str | None:
    """None when `method` scores block by block, else why it cannot (for a clear refusal)."""
    _load_builtin_selectors()
    return REGISTRY[method].cannot_stream if method in REGISTRY else None


def choose(selector: Selector, pool: Pool, ctx: Context, n: int, scores: Scores) -> np.ndarray:
    """`selector.select`, held to its contract: a selector that breaks it is a bug, not a user error."""
    return check_choice(selector.name, selector.select(pool, ctx, n, scores), n, len(pool))


def check_choice(name: str, indices: np.ndarray, n: int, n_rows: int) -> np.ndarray:
    """Sorted `indices`, once they are exactly min(n, n_rows) distinct rows of the pool: a
    selector that breaks this is a bug, not a user error."""
    chosen = np.asarray(indices, dtype=np.int64)
    want = min(n, n_rows)
    if (
        len(chosen) != want
        or len(np.unique(chosen)) != want
        or (want and not 0 <= chosen.min() <= chosen.max() < n_rows)
    ):
        raise RuntimeError(
            f"selector {name!r} returned {len(chosen)} indices ({len(np.unique(chosen))} distinct) "
            f"for a budget of {want} rows out of {n_rows}; please report this bug"
        )
    return np.sort(chosen)


def target_count(n_rows: int, ratio: float | None, count: int | None) -> int:
    """How many rows to keep: an explicit count wins over a ratio; never more than the pool."""
    if count is not None:
        return min(count, n_rows)
    return min(n_rows, max(1, round(n_rows * (ratio if ratio is not None else 0.2))))


REGISTRY: dict[str, type[Selector]] = {}


def register(cls: type[Selector]) -> type[Selector]:
    REGISTRY[cls.name] = cls
    return cls


def make_selector(name: str, **params: Any) -> Selector:
    _load_builtin_selectors()
    if name not in REGISTRY:
        close = difflib.get_close_matches(name, list(REGISTRY), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise UserError(f"unknown selection method {name!r}.{hint} Known: {', '.join(sorted(REGISTRY))}")
    return REGISTRY[name](**params)


def available_selectors() -> list[str]:
    _load_builtin_selectors()
    return sorted(REGISTRY)


def _load_builtin_selectors() -> None:
    import importlib
    import pkgutil

    import daar.select as package

    for info in pkgutil.iter_modules(package.__path__):
        if info.name != "base":
            importlib.import_module(f"daar.select.{info.name}")
