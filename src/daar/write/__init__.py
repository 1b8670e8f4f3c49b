"""Writing run folders: outputs that never look finished when they are not, and checked row accounting."""

from daar.write.folder import (
    MANIFEST,
    SCORES,
    SELECTED,
    AccountingError,
    account,
    clear_outputs,
    finish,
    locked,
    write_rows,
    write_scores,
)

__all__ = [
    "MANIFEST",
    "SCORES",
    "SELECTED",
    "AccountingError",
    "account",
    "finish",
    "clear_outputs",
    "locked",
    "write_rows",
    "write_scores",
]
