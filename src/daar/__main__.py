"""`python -m daar ...`, the same as the `daar` command (for environments without its script)."""

from daar.cli import main

main()
