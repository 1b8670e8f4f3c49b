"""`daar cache`: what the shared cache holds, and a clean-up that bounds its size."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from daar.errors import friendly
from daar.utils.cache import shared_cache
from daar.utils.cache_size import clean, entries, parse_size, verify
from daar.utils.progress import console


def register(app: typer.Typer) -> None:
    @app.command("cache")
    @friendly
    def cache_command(
        max_size: Annotated[
            str | None,
            typer.Option(help="Remove the least recently used entries until the cache holds at most this (20GB)."),
        ] = None,
        cache_dir: Annotated[Path | None, typer.Option(help="The cache (default: the shared user cache).")] = None,
        dry_run: Annotated[
            bool, typer.Option("--dry-run", help="Say what --max-size or --verify would remove, removing nothing.")
        ] = False,
        verify: Annotated[
            bool, typer.Option("--verify", help="Check every entry against its digests; remove the damaged ones.")
        ] = False,
    ) -> None:
        """Show the cache's size by kind of entry; with --max-size, shrink it to that size; with
        --verify, check every entry and remove the damaged ones."""
        root = Path(cache_dir or shared_cache())
        if verify:
            _verify(root, dry_run)
            if max_size is None:
                return
        if max_size is not None:
            removed, kept = clean(root, parse_size(max_size), dry_run=dry_run)
            verb = "would remove" if dry_run else "removed"
            console.print(
                f"{verb} {len(removed)} entries ({_size(sum(e.bytes for e in removed))}); "
                f"{len(kept)} entries ({_size(sum(e.bytes for e in kept))}) stay in {root}"
            )
            return
        found = entries(root)
        table = Table(title=f"{root}: {len(found)} entries, {_size(sum(e.bytes for e in found))}", show_edge=False)
        for column in ("kind", "entries", "size", "last used"):
            table.add_column(column, justify="left" if column == "kind" else "right")
        for kind in sorted({e.kind for e in found}):
            mine = [e for e in found if e.kind == kind]
            last = time.strftime("%Y-%m-%d %H:%M", time.localtime(max(e.last_use for e in mine)))
            table.add_row(kind, str(len(mine)), _size(sum(e.bytes for e in mine)), last)
        console.print(table)


def _verify(root: Path, dry_run: bool) -> None:
    damaged, unfinished, busy = verify(root, dry_run)
    verb = "would remove" if dry_run else "removed"
    for entry, reason in damaged:
        console.print(f"{verb} {entry.cache_entry} ({entry.kind}): {reason}", highlight=False, soft_wrap=True)
    checked = len(entries(root)) - len(unfinished) - len(busy) - (len(damaged) if dry_run else 0)
    console.print(
        f"{checked} entries match their digests; {len(damaged)} damaged entries "
        f"{'would be removed' if dry_run else 'removed'} (a run computes "
        f"them again); {len(unfinished)} unfinished (no digest list: computed again when needed); "
        f"{len(busy)} in use by a run, not checked",
        highlight=False,
    )


def _size(count: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if count < 1024 or unit == "GB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} TB"
