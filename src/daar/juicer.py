"""DaaR as a Data-Juicer operator: `daar_selector`, for recipes of `pip install daar[dj]` users.

Data-Juicer (py-data-juicer) imports every module named under the `data_juicer.ops` entry point
when its operators load (`data_juicer.ops.load_op_plugins`); pyproject.toml names this one, so a
recipe names the operator like a built-in one:

    process:
      - daar_selector:
          model: smollm2-135m-instruct
          examples_file: examples.yaml
          ratio: 0.2
          strategy: balanced

Its parameters are `daar select`'s settings (daar.config.SelectConfig; unset ones keep their
defaults), plus `config_file` (a daar settings file), `settings` (any other setting, dotted keys
as `--set`), `domains_file`, `cache_dir` and `run_dir`. It runs the whole method on the recipe's
dataset as `daar select` runs it on a file (daar.pipeline.run_select: examples, centroids, probe,
reward, strategy and shares; rows checked one by one, unusable rows rejected with a reason) and
returns the selected rows, in the dataset's order and with every column, as a Data-Juicer
dataset. The daar run folder (scores.parquet, rejected.jsonl, manifest.json, report.html) is
`run_dir`, by default `<the recipe's work_dir>/daar`.

No `from __future__ import annotations` here: Data-Juicer reads the parameters' types from the
signature (jsonargparse) to check a recipe before it runs.
"""

import tempfile
from pathlib import Path
from typing import Any

from data_juicer.ops.base_op import OPERATORS, Selector

OP_NAME = "daar_selector"


@OPERATORS.register_module(OP_NAME)
class DaarSelectorOperator(Selector):
    """Selects the rows that DaaR (Diversity as a Reward, arXiv 2502.04380) rates highest.

    The model's embedding layer and first decoder layers place each row among the domains it knows;
    a probe trained on pseudo-domains rates how far each row sits between them, and a reward head
    learns that rating. The rows are kept by `strategy` (balanced shares per pseudo-domain, overall
    top rows, or customized towards `target`), `ratio` or `count` of them. Any `daar select`
    method runs too (`method: random`, `ifd`, ...)."""

    def __init__(
        self,
        method: str | None = None,
        model: str | None = None,
        examples_file: str | None = None,
        domains_file: str | None = None,
        ratio: float | None = None,
        count: int | None = None,
        strategy: str | None = None,
        shares: str | None = None,
        target: str | None = None,
        target_fraction: float | None = None,
        other_fraction: float | None = None,
        clip_layer: int | None = None,
        probe_size: int | None = None,
        seed: int | None = None,
        max_length: int | None = None,
        batch_tokens: int | None = None,
        ensemble: int | None = None,
        device: str | None = None,
        dtype: str | None = None,
        fields: dict[str, str] | None = None,
        config_file: str | None = None,
        settings: dict[str, Any] | None = None,
        cache_dir: str | None = None,
        run_dir: str | None = None,
        trust_remote_code: bool = False,
        *args,
        **kwargs,
    ):
        """
        Initialization method; every daar setting left unset keeps `daar select`'s default.

        :param method: selector: daar (default) or a baseline (random, ifd, deita, ...).
        :param model: prober: a local folder, a hub id, or smollm2-135m-instruct (default).
        :param examples_file: example rows per domain instead of generating them.
        :param domains_file: YAML/JSON list of domains (name, description, optional examples).
        :param ratio: fraction of rows to keep (default 0.2).
        :param count: number of rows to keep (wins over ratio).
        :param strategy: balanced (default), overall or customized.
        :param shares: balanced: proportional (default) or equal.
        :param target: customized: the target domain.
        :param target_fraction: customized: share of the target group.
        :param other_fraction: customized: share of every other group.
        :param clip_layer: decoder layers the probe reads (default 3).
        :param probe_size: rows drawn for the probe set (default 5000).
        :param seed: random seed (default 42).
        :param max_length: tokens read per row (default 512).
        :param batch_tokens: tokens per prober batch (default: by model size).
        :param ensemble: whole fits averaged into one score (default 1).
        :param device: auto, cpu or cuda.
        :param dtype: auto, float32, bfloat16 or float16.
        :param fields: column names, e.g. {instruction: prompt, output: response}.
        :param config_file: a daar settings file (YAML/JSON, any daar select setting).
        :param settings: any other setting, dotted keys allowed ({heads.epochs: 5}).
        :param cache_dir: daar's feature and stage cache (default: the shared user cache).
        :param run_dir: where the daar run folder goes (default: <work_dir>/daar).
        :param trust_remote_code: allow the model's own code.
        """
        super().__init__(*args, **kwargs)
        from daar.config import build_settings

        named = {
            "method": method,
            "model": model,
            "examples_file": examples_file,
            "ratio": ratio,
            "count": count,
            "strategy": strategy,
            "shares": shares,
            "target": target,
            "target_fraction": target_fraction,
            "other_fraction": other_fraction,
            "clip_layer": clip_layer,
            "probe_size": probe_size,
            "seed": seed,
            "max_length": max_length,
            "batch_tokens": batch_tokens,
            "ensemble": ensemble,
            "device": device,
            "dtype": dtype,
            "trust_remote_code": trust_remote_code or None,
            **(settings or {}),
        }
        field = [f"{name}={column}" for name, column in (fields or {}).items()]
        domains = Path(domains_file) if domains_file else None
        # checked now, so a bad recipe fails before Data-Juicer loads the dataset
        self.select_config = build_settings(Path(config_file) if config_file else None, None, field, domains, named)
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self.run_dir = Path(run_dir) if run_dir else None

    def process(self, dataset):
        from daar.pipeline import run_select

        run_dir = self.run_dir
        if run_dir is None:
            run_dir = Path(self.work_dir) / "daar" if self.work_dir else Path(tempfile.mkdtemp(prefix="daar-"))
        result = run_select(self.select_config, dataset, run_dir, cache_dir=self.cache_dir)
        return dataset.select(result.selected_positions)
