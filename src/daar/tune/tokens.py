"""How many tokens each row trains on, counted as `daar tune` counts them (a chat row's whole
dialogue through the learner's template, daar.tune.data): what a token budget (daar.select.budget)
spends. A pool's counts are cached by the rows' dialogues, the tokenizer's model, the template and
the code."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from daar.models import load_tokenizer
from daar.read import Pool, Record
from daar.tune.data import choose_template, example_tokens
from daar.tune.settings import TuneConfig
from daar.utils.cache import code_version, stable_key, texts_key, write_json
from daar.utils.entry import CacheEntry, Contents, cached


class TokenCounter:
    """Counts rows' training tokens with the learner's tokenizer; a pool's counts are cached."""

    def __init__(self, model_dir: Path, trust_remote_code: bool, cache: Path | None = None) -> None:
        self.tokenizer = load_tokenizer(model_dir, trust_remote_code=trust_remote_code)
        self.template = choose_template(self.tokenizer)
        self.max_length = TuneConfig().max_length
        self.cache = cache

    def __call__(self, records: list[Record]) -> np.ndarray:
        return np.asarray(example_tokens(records, self.tokenizer, self.template, self.max_length), dtype=np.int64)

    def pool(self, pool: Pool, model_key: str) -> np.ndarray:
        """Every row's tokens, cached under `cache` by the rows' content, the model and the code."""
        if self.cache is None:
            return self(pool.records)
        texts = [json.dumps(r.messages, ensure_ascii=False) for r in pool.records]
        key = stable_key(model_key, self.template, self.max_length, texts_key(texts), code_version("daar.tune.data"))
        path = self.cache / "token_counts" / f"{key}.json"

        def count() -> np.ndarray:
            tokens = self(pool.records)
            write_json(path, {"tokens": tokens.tolist()})
            return tokens

        def read(found: Contents) -> np.ndarray:
            return np.asarray(json.loads(bytes(found[path.name]))["tokens"], dtype=np.int64)

        return cached(CacheEntry.at(path), [path.name], read, count, "token counts")[0]
