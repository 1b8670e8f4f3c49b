"""DaaR: Diversity as a Reward (Ling et al., 2025, arXiv 2502.04380), as a fitted selector.

fit: examples per domain (written by the model or given) -> centroids = mean e(x) of the examples ->
pseudo-labels by k-means on the probe set, started at the centroids -> domain probe (MLP on f(x),
cross-entropy) -> entropy of its softmax on the probe rows -> reward model (MLP on f(x), MSE to
the entropy). score: the reward model's prediction for every row. select (daar.select.strategies):
`balanced` (default: each pseudo-domain's share of the budget, its highest rewards first),
`overall` (the top rows, the paper) or `customized` (a large share of the target group).

Two settings measured in docs/EVIDENCE.md: `ensemble` averages whole fits made with seeds of their
own (a rerun with another seed otherwise shares only about 60% of its selection), and
`reward_adjust: length` ranks by what the reward says beyond row length. `stratified` keeps the
pseudo-domain quotas with random rows inside, to tell the two parts of DaaR apart.

Every step is cached under the context's cache folder, keyed by everything it depends on, so
rerunning with another ratio or strategy retrains nothing, and a rerun after an interruption
starts at the first unfinished step. The fitted state saves to a folder of safetensors + JSON.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Self

import numpy as np
from safetensors.torch import load, load_file, save_file

from daar.config import HEAD_SCHEDULES, Domain, ExampleRow, SelectConfig
from daar.embed import Features
from daar.probe.domains import example_centroids, probe_rows, pseudo_labels
from daar.probe.entropy import entropy, softmax
from daar.probe.examples import ExampleWriter, domain_examples, example_text, resolve_domains
from daar.probe.heads import SINGLE_THREAD_PARAMS, Head, Kind, head_parameters, train_head
from daar.read import Pool, Record, file_sha256
from daar.select import strategies
from daar.select.base import Artifacts, Context, Scores, Selector, register
from daar.select.members import Member, fit_length_lines, fitted_files, mean_of, member_metrics, member_seeds
from daar.select.subclusters import assign_subclusters, fit_scale, fit_subclusters, standardise
from daar.utils.cache import atomic_dir, atomic_path, code_version, load_arrays, read_json, save_arrays, write_json
from daar.utils.entry import CacheEntry, Contents, cached, cached_arrays, check_listed
from daar.utils.progress import console

FITTED_VERSION = 2


@register
class DaarSelector(Selector):
    """Diversity as a Reward (arXiv 2502.04380): keep the rows the model cannot place in one domain.

    Settings (SelectConfig): domains (K >= 2, default the paper's four), clip_layer 3, probe_size
    5,000, synthesis (5 warm-up + 10 pairs per domain, similarity threshold 0.85, top_p 0.95,
    temperature 0.9), heads (Adam; see HeadConfig for the measured choice of lr/epochs/batch),
    strategy balanced (shares per pseudo-domain, proportional or equal), overall (top ratio, the
    paper) or customized (target_fraction of the target group, other_fraction of each other group;
    paper: 50% / 10%), ensemble (members averaged; 1), reward_adjust (none, or length).
    """

    name = "daar"
    needs_features = True
    needs_reward = True  # stratified needs the probe's groups only

    def __init__(self) -> None:
        self.domains: list[str] = []
        self.centroids: np.ndarray | None = None  # (K, d) centroids of the domain examples' e(x)
        self.members: list[Member] = []
        self.length_lines: np.ndarray | None = None  # (K, 2), with reward_adjust "length"
        self.sub_centers: np.ndarray | None = None  # (K, S, d) sub-cluster centers in f(x), with subclusters S
        self.sub_scale: np.ndarray | None = None  # (2, d) mean and scale that standardise f(x) for them
        self.info: dict = {}
        self.examples_folder: Path | None = None
        self.examples: dict[str, list[ExampleRow]] = {}  # the example rows of the last fit, per domain
        self.example_files: dict[str, bytes] | None = None  # generated examples' files, as checked in the cache

    # ----------------------------------------------------------------------------------- fit
    def fit(self, pool: Pool, ctx: Context) -> Self:
        """Steps 1-7 of docs/METHOD.md. A selector that has centroids already (a loaded one) keeps
        them and refits steps 4-7 only."""
        feats = ctx.features(pool)
        if self.centroids is None:
            domains = resolve_domains(ctx.config)
            self.domains = [d.name for d in domains]
            self.examples = self._examples(domains, ctx)
            rows = [(j, s) for j, d in enumerate(domains) for s in self.examples[d.name]]
            texts = [example_text(s) for _, s in rows]
            example_feats = ctx.text_features(texts, "example_features", "example features")
            self.centroids = example_centroids(example_feats.emb, np.array([j for j, _ in rows]), len(domains))
            self.info["example_pairs"] = {d: len(v) for d, v in self.examples.items()}
        chars = np.array([len(t) for t in pool.texts], dtype=np.float64)
        return self.fit_arrays(feats.emb, feats.hid, ctx.features_dir(pool.texts).name, ctx, chars)

    def fit_arrays(
        self, emb: np.ndarray, hid: np.ndarray, features_key: str, ctx: Context, chars: np.ndarray | None = None
    ) -> Self:
        """Steps 4-7 on given e(x) and f(x) of the pool (centroids already set), once per ensemble
        member: pseudo-labels, probe, entropies, reward model. Separate from `fit` so that studies
        of other features reuse it; `features_key` names the arrays in the stage cache keys, and
        `chars` (each row's text length) is needed by reward_adjust "length"."""
        if self.centroids is None:
            raise RuntimeError("DaarSelector.fit_arrays needs the example centroids first")
        cfg = ctx.config
        seeds = member_seeds(cfg.seed, cfg.ensemble)
        self.members = [self._fit_member(emb, hid, features_key, ctx, seed) for seed in seeds]
        self.info.update(self.members[0].info)
        if len(seeds) > 1:
            self.info["ensemble_seeds"] = seeds
        self.length_lines = None
        if cfg.reward_adjust == "length":
            if chars is None:
                raise RuntimeError("reward_adjust 'length' needs the rows' text lengths (chars)")
            found = self._member_scores(hid, ctx)
            lines = fit_length_lines(found["reward"], np.log1p(chars), self._groups(found), len(self.domains))
            self.length_lines = lines
        self.sub_centers = self.sub_scale = None
        if cfg.subclusters:
            groups = self._groups(self._member_scores(hid, ctx))
            self.sub_scale = fit_scale(hid)
            x = standardise(hid, self.sub_scale)
            self.sub_centers = fit_subclusters(x, groups, len(self.domains), cfg.subclusters, cfg.seed)
        return self

    def _fit_member(self, emb: np.ndarray, hid: np.ndarray, features_key: str, ctx: Context, seed: int) -> Member:
        assert self.centroids is not None
        cfg = ctx.config.model_copy(update={"seed": seed})
        k = len(self.domains)
        probe_idx = probe_rows(len(emb), cfg.probe_size, seed)
        base_key = (
            features_key,
            hashlib.sha256(self.centroids.tobytes()).hexdigest(),
            probe_idx.tolist(),
            seed,
            code_version("daar.probe.domains", "daar.probe.heads", "daar.probe.entropy"),
        )
        with ctx.timer.stage("cluster") as flag:
            path = ctx.stage_path("cluster", *base_key).with_suffix(".safetensors")

            def cluster() -> dict[str, np.ndarray]:
                labels, centers = pseudo_labels(emb[probe_idx], self.centroids, seed)
                return {"labels": labels, "centers": centers}

            arrays, flag["cached"] = cached_arrays(path, cluster, "pseudo-labels")
            labels, centers = arrays["labels"], arrays["centers"]

        probe_hid = np.asarray(hid[probe_idx])
        heads = cfg.heads.model_dump()
        probe = _cached_head(ctx, "probe", (base_key, heads), probe_hid, labels, "classify", k, cfg)
        probe_entropy = entropy(softmax(probe.predict(probe_hid)))
        reward = None
        if self.needs_reward:
            rows = np.arange(len(probe_idx))
            if len(rows) > cfg.heads.max_reward_rows:
                rows = np.sort(np.random.default_rng(seed + 1).choice(rows, cfg.heads.max_reward_rows, replace=False))
            reward = _cached_head(
                ctx, "reward", (base_key, heads), probe_hid[rows], probe_entropy[rows], "regress", 1, cfg
            )
        sizes = np.bincount(labels, minlength=k)
        info = {
            "model": ctx.prober_fingerprint,
            "clip_layer": cfg.clip_layer,
            "max_length": cfg.max_length,
            "probe_rows": len(probe_idx),
            "pseudo_domain_sizes": {d: int(c) for d, c in zip(self.domains, sizes, strict=True)},
            "probe_entropy_mean": float(probe_entropy.mean()),
            "entropy_max": float(np.log(k)),
        }
        return Member(seed, probe, reward, centers, info)

    @property
    def probe(self) -> Head | None:
        """Member 0's probe head (the only one without an ensemble)."""
        return self.members[0].probe if self.members else None

    @property
    def reward(self) -> Head | None:
        return self.members[0].reward if self.members else None

    @property
    def cluster_centers(self) -> np.ndarray | None:
        return self.members[0].cluster_centers if self.members else None

    def _examples(self, domains: list[Domain], ctx: Context) -> dict:
        cfg = ctx.config
        key_domains = [d.model_dump() for d in domains]
        folder = ctx.stage_path(
            "examples",
            ctx.model_fingerprint,
            key_domains,
            cfg.synthesis.model_dump(),
            cfg.seed,
            str(ctx.device),
            str(ctx.prober_dtype),
            code_version("daar.probe.examples", "daar.probe.sampling"),
        )

        def make_writer() -> ExampleWriter:
            return ExampleWriter(
                ctx.model_dir, cfg.synthesis, cfg.seed, ctx.device, ctx.prober_dtype, cfg.trust_remote_code
            )

        # a cache entry other runs may share: the generated domains' accepted pairs and raw answers
        files = [f"{folder.name}/{d.name}{end}" for d in domains if not d.examples for end in (".json", ".raw.json")]

        def read(found: Contents) -> tuple[dict[str, list[ExampleRow]], dict[str, bytes]]:
            data = {Path(name).name: bytes(found[name]) for name in files}
            return {d.name: list(d.examples) or _accepted(data, d.name) for d in domains}, data

        def write() -> tuple[dict[str, list[ExampleRow]], dict[str, bytes]]:
            domain_examples(domains, folder, make_writer, cfg.synthesis.min_pairs)
            return read({name: (folder.parent / name).read_bytes() for name in files})

        with ctx.timer.stage("examples") as flag:
            (examples, self.example_files), flag["cached"] = cached(
                CacheEntry.at(folder), files, read, write, "examples"
            )
        self.examples_folder = folder
        return examples

    # --------------------------------------------------------------------------------- score
    def score_block(self, records: list[Record], features: Features | None, ctx: Context) -> Scores:
        if features is None:
            raise RuntimeError("DaaR scores rows from their prober features")
        positions = np.array([r.position for r in records], dtype=np.int64)
        chars = np.array([len(r.text) for r in records], dtype=np.float64)
        return self.score_features(features.hid, ctx, positions, chars)

    def score_features(
        self, hid: np.ndarray, ctx: Context, positions: np.ndarray | None = None, chars: np.ndarray | None = None
    ) -> Scores:
        """Scores of rows given their f(x): what `daar score` calls block by block. `positions` (a
        row's place in the pool) and `chars` (its text length) are read only by the settings that
        need them (stratified; reward_adjust "length")."""
        scores = self._member_scores(hid, ctx)
        reward = scores["reward"]
        scores = {"score": reward, **scores}
        if self.length_lines is not None:
            if chars is None:
                raise RuntimeError("this fitted state adjusts for length: score_features needs the rows' chars")
            line = self.length_lines[self._groups(scores)]
            scores["adjusted_reward"] = reward - (line[:, 0] + line[:, 1] * np.log1p(chars))
            scores["score"] = scores["adjusted_reward"]
        return scores

    def _groups(self, scores: Scores) -> np.ndarray:
        """Each row's pseudo-domain as an index into `domains` (the argmax of the mean probabilities)."""
        return np.argmax(np.stack([scores[f"prob_{d}"] for d in self.domains], 1), 1)

    def _member_scores(self, hid: np.ndarray, ctx: Context) -> Scores:
        """Each member's probe probabilities and reward on f(x), averaged over the members (the
        entropy column is the members' mean entropy, as the reward heads each predict one)."""
        if not self.members:
            raise RuntimeError(f"{type(self).__name__} needs fit() or load() first")
        probs_each, entropy_each, reward_each = [], [], []
        with ctx.timer.stage("score"):
            for member in self.members:
                member.probe.to(ctx.device)
                probs_each.append(softmax(member.probe.predict(hid)))
                entropy_each.append(entropy(probs_each[-1]))
                if member.reward is not None:
                    member.reward.to(ctx.device)
                    reward_each.append(member.reward.predict(hid)[:, 0].astype(np.float64))
        probs, ent = mean_of(probs_each), mean_of(entropy_each)
        scores: Scores = {}
        if reward_each:
            scores["reward"] = mean_of(reward_each)
        scores["entropy"] = ent
        scores["pseudo_domain"] = np.array(self.domains, dtype=object)[probs.argmax(1)]
        for j, name in enumerate(self.domains):
            scores[f"prob_{name}"] = probs[:, j]
        if self.sub_centers is not None and self.sub_scale is not None:
            x = standardise(hid, self.sub_scale)
            scores["subcluster"] = assign_subclusters(x, probs.argmax(1), self.sub_centers)
        return scores

    def cut(self, scores: Scores, n: int, cfg: SelectConfig) -> np.ndarray:
        """The strategy's `n` rows from the scores alone (no rows, no texts), so that a cut over
        the scores of many shards needs only these arrays in memory."""
        group = scores["pseudo_domain"]
        if cfg.strategy == "overall":
            return strategies.top_n(scores["score"], n)
        if cfg.strategy == "balanced" and self.sub_centers is not None:
            count = self.sub_centers.shape[1]
            return strategies.nested_balanced(
                scores["score"], group, scores["subcluster"], self.domains, count, n, cfg.shares
            )
        if cfg.strategy == "balanced":
            return strategies.balanced(scores["score"], group, self.domains, n, cfg.shares)
        assert cfg.target is not None  # the config validator demands it for "customized"
        return strategies.customized(
            scores["score"], group, self.domains, n, cfg.target, cfg.target_fraction, cfg.other_fraction
        )

    def artifacts(self) -> Artifacts:
        manifest: dict = {}
        if self.members and self.info:
            sizes = self.info["pseudo_domain_sizes"]
            manifest["probe"] = {**self.members[0].probe.metrics, "pseudo_domain_sizes": sizes}
            if self.reward is not None:
                manifest["reward"] = {**self.reward.metrics, "entropy_max": self.info["entropy_max"]}
            manifest["example_pairs"] = self.info.get("example_pairs", {})
            if len(self.members) > 1:
                manifest["ensemble"] = [member_metrics(m) for m in self.members]
        return Artifacts(self.examples_folder, self.examples, manifest, self.example_files)

    # ----------------------------------------------------------------------------- save/load
    def save(self, folder: Path) -> bool:
        """Fitted state as safetensors + JSON, no pickle, loadable without the pool. The folder is
        built under a temporary name and renamed into place, and `daar.json` records the sha256 of
        each file, so `load` never mixes files from two fits. Member m > 0 of an ensemble adds
        probe-m / reward-m files; a one-member state is laid out as before ensembles existed."""
        if not self.members or self.centroids is None:
            raise RuntimeError("nothing to save: fit() first")
        first = self.members[0]
        with atomic_dir(Path(folder)) as tmp:
            files = []
            for m, member in enumerate(self.members):
                for name, head in (("probe", member.probe), ("reward", member.reward)):
                    if head is not None:
                        files.append(f"{name}{f'-{m}' if m else ''}.safetensors")
                        save_file(head.state(), str(tmp / files[-1]))
            arrays = {"examples": self.centroids, "clusters": first.cluster_centers}
            arrays |= {f"clusters-{m}": member.cluster_centers for m, member in enumerate(self.members) if m}
            if self.length_lines is not None:
                arrays["length_lines"] = self.length_lines
            if self.sub_centers is not None and self.sub_scale is not None:
                arrays["subclusters"] = self.sub_centers
                arrays["subcluster_scale"] = self.sub_scale
            save_arrays(tmp / "centroids.safetensors", **arrays)
            files.append("centroids.safetensors")
            meta: dict = {"version": FITTED_VERSION, "domains": self.domains, "info": self.info}
            meta["probe_metrics"] = first.probe.metrics
            if first.reward is not None:
                meta["reward_metrics"] = first.reward.metrics
            if len(self.members) > 1:
                meta["members"] = [member_metrics(m) for m in self.members[1:]]
            meta["files"] = {name: file_sha256(tmp / name) for name in fitted_files(files)}
            write_json(tmp / "daar.json", meta)
        return True

    @classmethod
    def load(cls, folder: Path) -> Self:
        folder = Path(folder)
        meta_path = folder / "daar.json"
        if not meta_path.exists():
            raise FileNotFoundError(f"{folder}: not a fitted DaaR folder (no daar.json)")
        meta = read_json(meta_path)
        if meta.get("version") != FITTED_VERSION:
            raise ValueError(f"{meta_path}: fitted-state version {meta.get('version')}, expected {FITTED_VERSION}")
        check_listed(folder, meta.get("files"), str(meta_path))  # plain names inside, sha256 as saved
        self = cls()
        self.domains = list(meta["domains"])
        self.info = dict(meta["info"])
        arrays = load_arrays(folder / "centroids.safetensors")
        self.centroids = arrays["examples"] if "examples" in arrays else arrays["seeds"]  # fitted before 0.2
        self.length_lines = arrays.get("length_lines")
        self.sub_centers = arrays.get("subclusters")
        self.sub_scale = arrays.get("subcluster_scale")
        described = [
            {"seed": self.info.get("ensemble_seeds", [0])[0], **meta},
            *meta.get("members", []),
        ]
        for m, entry in enumerate(described):
            suffix = f"-{m}" if m else ""

            def head(name: str, metrics: dict | None, suffix: str = suffix) -> Head | None:
                path = folder / f"{name}{suffix}.safetensors"
                return Head.from_state(load_file(str(path)), metrics) if path.name in meta["files"] else None

            probe = head("probe", entry["probe_metrics"])
            assert probe is not None  # every member has a probe
            centers = arrays["clusters" if not m else f"clusters-{m}"]
            self.members.append(Member(int(entry["seed"]), probe, head("reward", entry.get("reward_metrics")), centers))
        return self

    def check_context(self, ctx: Context) -> None:
        """A loaded selector only makes sense with the prober it was fitted with."""
        cfg = ctx.config
        expected = (self.info.get("model"), self.info.get("clip_layer"), self.info.get("max_length"))
        actual = (ctx.prober_fingerprint, cfg.clip_layer, cfg.max_length)
        if expected != actual:
            raise ValueError(f"fitted with model/clip_layer/max_length {expected}, scoring with {actual}")


def _cached_head(
    ctx: Context, name: str, key: tuple, x: np.ndarray, y: np.ndarray, kind: Kind, out: int, cfg: SelectConfig
) -> Head:
    """A head trained on the prober's device (one per key: settings, data, device), cached on disk."""
    path = ctx.stage_path(name, key, ctx.device).with_suffix(".safetensors")
    meta = path.with_suffix(".json")

    def train() -> Head:
        _hint_batched_heads(name, x.shape[1], out, cfg, ctx.device)
        head = train_head(x, y, kind, out, cfg.heads, cfg.seed, device=ctx.device, label=name)
        with atomic_path(path) as tmp:
            save_file(head.state(), str(tmp))
        write_json(meta, head.metrics)
        return head

    def read(found: Contents) -> Head:
        return Head.from_state(load(bytes(found[path.name])), json.loads(bytes(found[meta.name]))).to(ctx.device)

    with ctx.timer.stage(name) as flag:  # a cache entry of two files, checked by their digests
        head, flag["cached"] = cached(CacheEntry.at(path), [path.name, meta.name], read, train, f"{name} head")
        return head


def _accepted(files: dict[str, bytes], domain: str) -> list[ExampleRow]:
    return [ExampleRow.model_validate(row) for row in json.loads(files[f"{domain}.json"])["accepted"]]


def _hint_batched_heads(name: str, dim: int, out: int, cfg: SelectConfig, device: str) -> None:
    """On a CPU a wide head steps at the speed of its optimizer pass, so small batches take many
    minutes (7B width: an estimated 960 s for both heads on 2 cores); say which schedule is faster."""
    batched = HEAD_SCHEDULES["batched"].batch_size
    params = head_parameters(dim, out)
    if device == "cpu" and cfg.heads.batch_size < batched and params >= SINGLE_THREAD_PARAMS:
        console.print(
            f"[yellow]{name} head: {params / 1e6:.0f} M parameters at batch {cfg.heads.batch_size} on CPU; "
            "--set heads=batched trains it several times faster, with a selection as close to the "
            "default's as another seed's (docs/RESULTS.md, heads at 7B width on CPU)[/]"
        )
