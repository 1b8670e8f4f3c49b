"""Why does DaaR's selection collapse onto one domain, and what keeps every domain? (docs/BALANCE.md)

Run by hand; prints markdown tables. The pool's `domain` field is read ONLY to evaluate: every
selection below is made without it.

    .venv/bin/python benchmarks/balance_study.py                       # demo sample, generated seeds
    .venv/bin/python benchmarks/balance_study.py --examples-file S.yaml   # hand-given seeds
    .venv/bin/python benchmarks/balance_study.py --sample 0 --only "paper;default"  # the full pool

Each variant changes one thing against the authors' settings (`paper`): the heads' training, the
text that e(x) embeds, the final norm in f(x), the clip layer, the prober. For each it reports
the true-domain mix of a 20% selection under the paper's `overall` strategy and under
`balanced` (equal shares per pseudo-domain), and how well the pseudo-domains match the truth.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from daar.config import PAPER_HEADS, HeadConfig, SelectConfig
from daar.embed import Features
from daar.pipeline import sample_pool as _sample
from daar.probe.domains import example_centroids, pseudo_labels
from daar.probe.domains import probe_rows as draw_probe_rows
from daar.probe.entropy import entropy, softmax
from daar.probe.examples import example_text, resolve_domains
from daar.probe.heads import train_head
from daar.read import Pool, read_pool
from daar.select import strategies
from daar.select.base import Context
from daar.select.daar import DaarSelector
from daar.utils.stats import spearman

POOL = Path(__file__).resolve().parents[2] / "shared" / "data" / "pool" / "pool.jsonl.gz"
VARIANTS = (
    "paper",
    "default",
    "heads:1e-4,3,8",
    "heads_class_balanced",
    "probe_temperature",
    "ex_plain_text",
    "fx_no_final_norm",
)


@dataclass
class Outcome:
    name: str
    truth: np.ndarray
    scores: dict[str, np.ndarray]
    domains: list[str]
    pseudo_labels: np.ndarray  # probe argmax over the pool
    seconds: float


def plain_text(instruction: str, input_: str, output: str) -> str:
    """The authors' text for e(x): "{instruction} {input} {output}"."""
    return " ".join(part for part in (instruction, input_, output) if part)


def score_with(sel: DaarSelector, hid: np.ndarray) -> dict[str, np.ndarray]:
    probs = softmax(sel.probe.predict(hid))
    return {
        "score": sel.reward.predict(hid)[:, 0].astype(np.float64),
        "entropy": entropy(probs),
        "pseudo_domain": np.array(sel.domains, dtype=object)[probs.argmax(1)],
    }


def fit_variant(
    ctx: Context, domains, seeds, emb: np.ndarray, hid: np.ndarray, seed_emb: np.ndarray, key: str
) -> DaarSelector:
    sel = DaarSelector()
    sel.domains = [d.name for d in domains]
    seed_domain = np.array([j for j, d in enumerate(domains) for _ in seeds[d.name]])
    sel.centroids = example_centroids(seed_emb, seed_domain, len(domains))
    return sel.fit_arrays(emb, hid, key, ctx)


def refit_reward(sel: DaarSelector, hid: np.ndarray, target: np.ndarray, ctx: Context) -> None:
    torch.manual_seed(ctx.config.seed)
    sel.reward = train_head(hid, target, "regress", 1, ctx.config.heads, ctx.config.seed)


def run_variant(name: str, args, pool: Pool, truth: np.ndarray) -> Outcome:
    start = time.perf_counter()
    # Every variant changes one thing against the authors' settings, heads included; `default` is
    # daar's default heads (early stopping on the pseudo-labels' validation loss).
    heads = HeadConfig() if name.startswith("default") else PAPER_HEADS
    if name.startswith("heads:"):  # heads:LR,EPOCHS,BATCH, a fixed schedule
        lr, epochs, batch = name.split(":", 1)[1].split(",")
        heads = PAPER_HEADS.model_copy(update={"lr": float(lr), "epochs": int(epochs), "batch_size": int(batch)})
    cfg = SelectConfig(
        examples_file=args.examples_file, model=args.model, clip_layer=args.clip_layer, seed=args.seed, heads=heads
    )
    main_cache = Path(args.cache_dir)
    cache = main_cache.parent / f"{main_cache.name}-no-final-norm" if name == "fx_no_final_norm" else main_cache
    ctx = Context(cfg, cache)
    if name == "fx_no_final_norm":
        ctx.extractor().model.norm = torch.nn.Identity()
    domains = resolve_domains(cfg)
    seeds = DaarSelector()._seeds(domains, Context(cfg, main_cache))
    seed_rows = [s for d in domains for s in seeds[d.name]]
    feats: Features = ctx.features(pool)
    emb, hid = np.asarray(feats.emb), np.asarray(feats.hid)
    seed_emb = ctx.text_features([example_text(s) for s in seed_rows], "seed_features", "seeds").emb
    if name == "ex_plain_text":
        emb = ctx.text_features([plain_text(r.instruction, r.input, r.output) for r in pool.records], "x", "plain").emb
        seed_emb = ctx.text_features([plain_text(s.instruction, s.input, s.output) for s in seed_rows], "x", "s").emb
    sel = fit_variant(ctx, domains, seeds, emb, hid, seed_emb, f"{name}-{ctx.features_dir(pool.texts).name}")
    if name in ("heads_class_balanced", "probe_temperature"):
        probe_rows = draw_probe_rows(len(pool), cfg.probe_size, cfg.seed)
        labels, _ = pseudo_labels(emb[probe_rows], sel.centroids, cfg.seed)  # as fit_arrays drew them
        if name == "heads_class_balanced":
            counts = np.bincount(labels, minlength=len(domains))
            rng = np.random.default_rng(cfg.seed)
            idx = np.concatenate(
                [
                    rng.choice(np.flatnonzero(labels == j), counts.max(), replace=True)
                    for j in range(len(domains))
                    if counts[j]
                ]
            )
            torch.manual_seed(cfg.seed)
            sel.probe = train_head(hid[probe_rows][idx], labels[idx], "classify", len(domains), cfg.heads, cfg.seed)
            target = entropy(softmax(sel.probe.predict(hid[probe_rows])))
        else:
            logits = sel.probe.predict(hid[probe_rows])
            temps = np.exp(np.linspace(np.log(0.05), np.log(20), 121))
            nll = [-np.log(softmax(logits / t)[np.arange(len(labels)), labels] + 1e-12).mean() for t in temps]
            best = float(temps[int(np.argmin(nll))])
            print(f"  probe_temperature: fitted T = {best:.3f}")
            target = entropy(softmax(logits / best))
            sel.probe.mlp[-1].weight.data /= best
            sel.probe.mlp[-1].bias.data /= best
        refit_reward(sel, hid[probe_rows], target, ctx)
    scores = score_with(sel, hid)
    print(f"  {name}: probe {sel.probe.metrics} reward {sel.reward.metrics}")
    return Outcome(
        name, truth, scores, sel.domains, np.asarray(scores["pseudo_domain"]).astype(str), time.perf_counter() - start
    )


def mix_cells(truth: np.ndarray, idx: np.ndarray, names: list[str]) -> str:
    counts = [int((truth[idx] == d).sum()) for d in names]
    h = strategies.mix_entropy(truth[idx], names)
    return " | ".join(str(c) for c in counts) + f" | {h:.3f} ({h / np.log(len(names)):.2f})"


def report(outcomes: list[Outcome], n: int, chars: np.ndarray) -> None:
    names = sorted(set(outcomes[0].truth))
    print("\n### Selections (true-domain counts; entropy in nats, and as a share of ln K)\n")
    print(f"| variant | strategy | {' | '.join(names)} | entropy | pseudo-domain NMI / ARI | Spearman(reward, chars) |")
    print("|---|---|" + "--:|" * (len(names) + 3))
    for o in outcomes:
        nmi = normalized_mutual_info_score(o.truth, o.pseudo_labels)
        ari = adjusted_rand_score(o.truth, o.pseudo_labels)
        rho = spearman(o.scores["score"], chars)
        for strategy in ("overall", "balanced", "proportional"):
            if strategy == "overall":
                idx = strategies.top_n(o.scores["score"], n)
            else:
                shares = "equal" if strategy == "balanced" else "proportional"
                idx = strategies.balanced(o.scores["score"], o.pseudo_labels, o.domains, n, shares)
            label = "balanced (proportional)" if strategy == "proportional" else strategy
            extra = f"{nmi:.3f} / {ari:.3f} | {rho:+.3f}" if strategy == "overall" else " | "
            print(f"| {o.name} | {label} | {mix_cells(o.truth, idx, names)} | {extra} |")
    print("\n### Probe entropy by true domain (median, nats) and pseudo-domain sizes over the pool\n")
    print(f"| variant | {' | '.join(names)} | pseudo-domain sizes | seconds |")
    print("|---|" + "--:|" * (len(names) + 2))
    for o in outcomes:
        med = [f"{np.median(o.scores['entropy'][o.truth == d]):.3f}" for d in names]
        sizes = {d: int((o.pseudo_labels == d).sum()) for d in o.domains}
        print(f"| {o.name} | {' | '.join(med)} | {sizes} | {o.seconds:.0f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pool", default=str(POOL))
    parser.add_argument("--sample", type=int, default=2000, help="rows (0 = the whole pool)")
    parser.add_argument("--examples-file", default=None)
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--clip-layers", default="", help="extra clip layers to try, e.g. 1,6,12")
    parser.add_argument("--clip-layer", type=int, default=3)
    parser.add_argument(
        "--only", default="", help="variants separated by ';' (default: all), e.g. 'paper;heads:1e-4,3,8'"
    )
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--cache-dir", default="runs/balance_study/cache")
    args = parser.parse_args()
    full = read_pool(args.pool)
    pool, _ = _sample(full, args.sample or None, 42)
    truth = np.array([str(r.raw.get("domain")) for r in pool.records])
    chars = np.array([len(t) for t in pool.texts], dtype=np.float64)
    n = strategies.top_n(np.zeros(len(pool)), round(0.2 * len(pool))).size
    print(f"pool {len(pool)} rows, select {n}; model {args.model}; seeds {args.examples_file or 'generated'}")
    wanted = [v for v in (args.only.split(";") if args.only else VARIANTS) if v]
    outcomes = [run_variant(v, args, pool, truth) for v in wanted]
    base_clip = args.clip_layer
    for clip in [int(c) for c in args.clip_layers.split(",") if c]:
        args.clip_layer = clip
        out = run_variant("paper", args, pool, truth)
        out.name = f"clip_layer {clip}"
        outcomes.append(out)
    args.clip_layer = base_clip
    report(outcomes, n, chars)


if __name__ == "__main__":
    main()
