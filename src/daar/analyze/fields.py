"""The share of each value of a row field that a selection kept: where the selected rows come from.

Why: a selection can keep the domains it was asked to balance and still drop whole
sub-populations inside them (docs/EVIDENCE.md, section 5: the default kept 0-6% of one templated
source's rows for a 20% budget). A field the method never reads (a source, a language, a licence)
shows that on a user's own pool. Display only: no selector sees the field.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

MISSING = "(missing)"


def field_values(raws: Sequence[dict[str, Any]], field: str) -> list[str]:
    """Each row's value of `field` as text, MISSING where a row has none."""
    return [str(r.get(field)) if r.get(field) not in (None, "") else MISSING for r in raws]


def kept_by_value(values: Sequence[str], mask: np.ndarray) -> dict[str, Any]:
    """Per value: rows in the pool, rows kept and the share kept; values in descending row count."""
    rows = Counter(values)
    kept = Counter(v for v, m in zip(values, mask, strict=True) if m)
    ordered = sorted(rows, key=lambda v: (-rows[v], v))
    found = {v: {"rows": rows[v], "kept": kept[v], "share_kept": kept[v] / rows[v]} for v in ordered}
    return {"rows": len(values), "kept": int(np.sum(mask)), "values": found}
