"""The paper's cheap baselines, behind the same Selector interface as DaaR.

Every selector here reads only the instruction, input and output of a row (through `Record`) and
the prober's e(x) from the run's Context; none looks at `domain`, `source` or `id`, so a baseline
cannot win by peeking at the ground truth the evaluation uses. The model-scored baselines (IFD,
Alpagasus) live in `model_scored.py`.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from daar.embed import Features
from daar.read import Pool, Record
from daar.select.base import Context, Scores, Selector, register, target_count
from daar.select.model_scored import IFDSelector


def unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero), so a dot product is a cosine."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms > 0, norms, 1.0)


@register
class RandomSelector(Selector):
    """Random sampling, the paper's first baseline: a uniform permutation seeded by `config.seed`."""

    name = "random"
    cannot_stream = (
        "its draw is one permutation of the whole pool (a row's number depends on the pool's size); "
        "`stratified` with `strategy: overall` draws per row and streams"
    )

    def score(self, pool: Pool, ctx: Context) -> Scores:
        rng = np.random.default_rng(ctx.config.seed)
        return {"score": rng.random(len(pool))}


@register
class InstructionLengthSelector(Selector):
    """ "Longest instruction" baseline (DaaR paper, Table 1): characters of instruction plus input.

    Characters rather than tokens keep the score independent of the model, as in the paper.
    """

    name = "instruction_length"

    def score_block(self, records: list[Record], features: Features | None, ctx: Context) -> Scores:
        lengths = np.array([len(r.instruction) + len(r.input) for r in records], dtype=np.float64)
        return {"score": lengths}


@register
class OutputLengthSelector(Selector):
    """ "Longest output" baseline (DaaR paper, Table 1; Zhao et al. 2024, "Long is more for alignment"):
    characters of the response."""

    name = "output_length"

    def score_block(self, records: list[Record], features: Features | None, ctx: Context) -> Scores:
        return {"score": np.array([len(r.output) for r in records], dtype=np.float64)}


@register
class KCenterSelector(Selector):
    """k-center greedy (Sener & Savarese 2018, "Active learning for CNNs: a core-set approach") on e(x).

    Pure coverage, no quality signal: a useful "diversity only" reference next to DaaR. Distance is
    cosine distance (1 - cos) between the prober's mean token embeddings. The first centre is drawn
    uniformly with `config.seed`; each next centre is the row farthest from all centres so far.

    `score` is the coverage distance: for a picked row, its distance to the centres picked before it
    (the first centre gets 2.0, the largest cosine distance); for any other row, its distance to the
    nearest picked centre. Greedy distances never grow, so the top-n of this score is the greedy
    picking itself; `select` reruns the greedy for whatever n it is asked for.
    """

    name = "kcenter"
    cannot_stream = "each centre is the row farthest from all centres so far: a greedy pass over every row at once"

    def __init__(self) -> None:
        self._order: np.ndarray | None = None
        self._key: tuple[int, int] | None = None

    def greedy(self, emb: np.ndarray, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """Indices in picking order and, per row, the coverage distance defined in the class doc."""
        x = unit_rows(emb)
        total = len(x)
        n = max(0, min(n, total))
        coverage = np.full(total, 2.0, dtype=np.float64)
        order = np.empty(n, dtype=np.int64)
        if n == 0:
            return order, coverage
        nearest = np.full(total, np.inf, dtype=np.float64)
        pick = int(np.random.default_rng(seed).integers(total))
        for step in range(n):
            order[step] = pick
            coverage[pick] = 2.0 if step == 0 else nearest[pick]
            dist = 1.0 - x @ x[pick]
            np.minimum(nearest, dist, out=nearest)
            nearest[order[: step + 1]] = -np.inf  # never pick a centre twice
            pick = int(np.argmax(nearest))
        picked = np.zeros(total, dtype=bool)
        picked[order] = True
        # Unpicked rows: distance to the nearest centre, squeezed just below the last greedy distance
        # so ties cannot lift them above a picked row.
        floor = coverage[order[-1]]
        rest = np.clip(nearest[~picked], 0.0, None)
        coverage[~picked] = np.minimum(rest, np.nextafter(floor, -np.inf))
        return order, coverage

    def score(self, pool: Pool, ctx: Context) -> Scores:
        n = target_count(len(pool), ctx.config.ratio, ctx.config.count)
        order, coverage = self.greedy(ctx.features(pool).emb, n, ctx.config.seed)
        self._order, self._key = order, (len(pool), n)
        return {"score": coverage}

    def select(self, pool: Pool, ctx: Context, n: int, scores: Scores) -> np.ndarray:
        if self._order is None or self._key != (len(pool), n):
            self._order, _ = self.greedy(ctx.features(pool).emb, n, ctx.config.seed)
            self._key = (len(pool), n)
        return np.sort(self._order[:n])


@register
class DeitaSelector(Selector):
    """Deita's score-first, diversity-aware selection (Liu et al. 2024, "What makes good data for
    alignment?", the "Repr Filter").

    Rows are visited in descending score order; a row is kept only if its cosine distance to every
    row kept so far exceeds `threshold`, until `n` are kept. Deita's release keeps a row when its
    nearest kept neighbour has cosine *similarity* below 0.9, i.e. distance above 0.1, our default.
    Embeddings are the prober's e(x) (Deita uses a fine-tuned Llama's last hidden state, which we
    do not have). If the filter runs out of rows before `n`, the rest are filled with the best-
    scoring skipped rows, so the selection size always matches the other methods (Deita itself would
    return fewer); `last_stats` says how many were filled.

    The score is a stand-in: Deita's EVOL complexity and quality scorers (two fine-tuned 13B models)
    are not available offline. `proxy="length"` (default) multiplies instruction+input characters
    (complexity) by output characters (quality) -- Deita multiplies its two scores the same way;
    `proxy="ifd"` uses the Superfiltering IFD score instead (one pass of the small model per row).
    Neither is Deita's real scorer: read this baseline as "score then repr-filter".
    """

    name = "deita"
    cannot_stream = "its filter compares each row with every row kept before it: one pass over the whole pool"

    def __init__(self, threshold: float = 0.1, proxy: Literal["length", "ifd"] = "length") -> None:
        if not 0.0 <= threshold < 2.0:
            raise ValueError(f"deita threshold is a cosine distance in [0, 2), got {threshold}")
        if proxy not in ("length", "ifd"):
            raise ValueError(f"deita proxy must be 'length' or 'ifd', got {proxy!r}")
        self.threshold = threshold
        self.proxy = proxy
        self.last_stats: dict[str, int] = {}

    def score(self, pool: Pool, ctx: Context) -> Scores:
        if self.proxy == "ifd":

            return IFDSelector().score(pool, ctx)
        complexity = np.array([len(r.instruction) + len(r.input) for r in pool.records], dtype=np.float64)
        quality = np.array([len(r.output) for r in pool.records], dtype=np.float64)
        return {"score": complexity * quality, "complexity": complexity, "quality": quality}

    def select(self, pool: Pool, ctx: Context, n: int, scores: Scores) -> np.ndarray:
        kept = repr_filter(ctx.features(pool).emb, scores["score"], n, self.threshold)
        self.last_stats = {"filtered": len(kept), "filled": max(0, min(n, len(pool)) - len(kept))}
        if len(kept) < n:
            rest = np.setdiff1d(np.arange(len(pool)), kept)
            score = np.asarray(scores["score"], dtype=np.float64)
            rest = rest[np.lexsort((rest, -score[rest]))][: n - len(kept)]
            kept = np.concatenate([kept, rest])
        return np.sort(kept)


def repr_filter(emb: np.ndarray, score: np.ndarray, n: int, threshold: float) -> np.ndarray:
    """Indices kept by Deita's filter (in keeping order): each is > `threshold` cosine distance from
    every earlier kept row. Stops at `n` rows or when the pool runs out."""
    x = unit_rows(emb)
    total = len(x)
    n = max(0, min(n, total))
    order = np.lexsort((np.arange(total), -np.asarray(score, dtype=np.float64)))
    kept_vecs = np.empty((n, x.shape[1]), dtype=np.float32)
    kept: list[int] = []
    max_sim = 1.0 - threshold
    for i in order:
        if len(kept) >= n:
            break
        if kept and float(np.max(kept_vecs[: len(kept)] @ x[i])) >= max_sim:
            continue
        kept_vecs[len(kept)] = x[i]
        kept.append(int(i))
    return np.array(kept, dtype=np.int64)
