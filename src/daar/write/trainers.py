"""dataset_info.json beside the selection: the entry LLaMA-Factory reads to train on selected.jsonl.

LLaMA-Factory finds datasets by name in `<dataset_dir>/dataset_info.json`; each entry names its
file and how its columns map onto a conversation (its data/README.md):

- Alpaca rows: `formatting: alpaca`, `columns` prompt / query / response (and system, history
  when the rows have them) named as the input had them (`--field` renames included).
- Chat rows (`messages` with role/content) and ShareGPT rows (`conversations` with from/value):
  `formatting: sharegpt`, `columns.messages` the chat field, and `tags` naming the role and
  content keys and the user, assistant and system roles as the rows spell them.

The kind of rows is seen while selected.jsonl is written (`RowKinds`). A selection mixing Alpaca and
chat rows, or spelling one role two ways, cannot be one entry: the entry is then left out, or
written with a note of the rows LLaMA-Factory will skip, and the manifest says which. With
`dataset_dir: RUN` and `dataset: daar_selected` in a LLaMA-Factory training config, the file is
read as it is. README.md, "Train on the selection", shows the TRL and axolotl lines for it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from daar.config import FieldMap
from daar.utils.cache import write_json

DATASET_INFO = "dataset_info.json"
ENTRY = "daar_selected"
_USER = ("user", "human")
_ASSISTANT = ("assistant", "gpt", "bot", "model")


class RowKinds:
    """What the selected rows are, counted as they pass by on their way to selected.jsonl."""

    def __init__(self, fields: FieldMap) -> None:
        self.fields = fields
        self.kinds: Counter[str] = Counter()  # alpaca, or the chat field's name
        self.keys: Counter[tuple[str, str]] = Counter()  # (role key, content key) of chat turns
        self.roles: Counter[str] = Counter()
        self.columns: set[str] = set()  # columns that hold a value in some row

    def rows(self, rows: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for row in rows:
            self._see(row)
            yield row

    def _see(self, row: Any) -> None:
        if not isinstance(row, dict):
            return
        self.columns.update(k for k, v in row.items() if v not in (None, ""))
        # the reader's rule (daar.read.records): a chat field holds a list of turns; a CSV row's empty
        # chat cell is written back as "" and is no chat
        chats = (self.fields.messages, self.fields.conversations)
        chat = next((k for k in chats if isinstance(row.get(k), list)), None)
        self.kinds[chat or "alpaca"] += 1
        for turn in row[chat] if chat else []:
            if isinstance(turn, dict):
                role_key = "role" if "role" in turn else "from"
                self.keys[(role_key, "content" if "content" in turn else "value")] += 1
                self.roles[str(turn.get(role_key, "")).strip()] += 1

    def entry(self, file_name: str) -> tuple[dict[str, Any] | None, list[str]]:
        """The dataset_info.json entry for `file_name`, or None, and notes on what it cannot hold."""
        if not self.kinds:
            return None, ["no rows selected"]
        if len(self.kinds) > 1:
            mix = ", ".join(f"{n} {kind}" for kind, n in self.kinds.most_common())
            return None, [f"the selection mixes row kinds ({mix}); LLaMA-Factory reads one kind per dataset entry"]
        kind = next(iter(self.kinds))
        if kind == "alpaca":
            return self._alpaca(file_name), []
        return self._sharegpt(file_name, kind)

    def _alpaca(self, file_name: str) -> dict[str, Any]:
        f = self.fields
        columns = {"prompt": f.instruction, "query": f.input, "response": f.output}
        if f.input not in self.columns:
            del columns["query"]
        columns |= {name: name for name in ("system", "history") if name in self.columns}
        return {"file_name": file_name, "formatting": "alpaca", "columns": columns}

    def _sharegpt(self, file_name: str, kind: str) -> tuple[dict[str, Any] | None, list[str]]:
        if not self.keys:
            return None, [f"the '{kind}' turns hold no role/content or from/value keys"]
        (role_key, content_key), _ = self.keys.most_common(1)[0]
        notes = []
        if len(self.keys) > 1:
            notes.append(f"turns use several key pairs {sorted(self.keys)}; the entry names {role_key}/{content_key}")
        tags = {"role_tag": role_key, "content_tag": content_key}
        for tag, spellings in (("user_tag", _USER), ("assistant_tag", _ASSISTANT)):
            seen = [r for r in self.roles if r in spellings]
            if seen:
                tags[tag] = max(seen, key=lambda r: self.roles[r])
        tags["system_tag"] = "system"
        unknown = sorted(set(self.roles) - {tags.get("user_tag"), tags.get("assistant_tag"), "system"})
        if unknown:
            notes.append(f"LLaMA-Factory skips rows with the roles {unknown} (its tags name one spelling per role)")
        columns = {"messages": kind} | {name: name for name in ("system", "tools") if name in self.columns}
        return {"file_name": file_name, "formatting": "sharegpt", "columns": columns, "tags": tags}, notes


def write_dataset_info(out_dir: Path, kinds: RowKinds, file_name: str = "selected.jsonl") -> dict[str, Any]:
    """dataset_info.json when the rows make one entry; the manifest's `trainers` section either way."""
    entry, notes = kinds.entry(file_name)
    if entry is not None:
        write_json(Path(out_dir) / DATASET_INFO, {ENTRY: entry})
    return {"llamafactory": {"dataset_info": DATASET_INFO if entry else None, "dataset": ENTRY, "notes": notes}}
