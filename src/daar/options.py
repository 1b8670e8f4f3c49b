"""Command-line options that several commands share, declared once.

`daar select` and `daar fit` both build a prober from the same options; declaring them here keeps
their names, types and help texts the same in every command. Each maps onto a SelectConfig field
through `daar.config.prober_options`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

Config = Annotated[Path | None, typer.Option(help="YAML/JSON file of settings (any SelectConfig field).")]
Set = Annotated[list[str] | None, typer.Option("--set", help="Override any setting: key=value, dotted.")]
Model = Annotated[
    str | None,
    typer.Option(help="Local folder, hub id (downloaded to the HF cache unless offline), or smollm2-135m-instruct."),
]
Adapter = Annotated[
    Path | None, typer.Option(help="LoRA adapter of --model (daar tune output): probe with the tuned model.")
]
Domains = Annotated[Path | None, typer.Option(help="YAML/JSON list of domains, with optional examples.")]
ExamplesFile = Annotated[Path | None, typer.Option(help="Example rows per domain instead of generating them.")]
SeedsFile = Annotated[Path | None, typer.Option(hidden=True, help="Old name of --examples-file.")]
ClipLayer = Annotated[int | None, typer.Option(help="Decoder layers the probe reads (default 3).")]
ProbeSize = Annotated[int | None, typer.Option(help="Rows drawn for the probe set (default 5000).")]
Seed = Annotated[int | None, typer.Option(help="Random seed for sampling, clustering, heads.")]
MaxLength = Annotated[int | None, typer.Option(help="Tokens read per row (default 512).")]
Device = Annotated[str | None, typer.Option(help="auto, cpu or cuda.")]
Dtype = Annotated[
    str | None, typer.Option(help="auto (bf16 on GPUs and bf16-capable CPUs), float32, bfloat16 or float16.")
]
Field = Annotated[list[str] | None, typer.Option(help="Field mapping, e.g. instruction=prompt (repeatable).")]
CacheDir = Annotated[Path | None, typer.Option(help="Feature/stage cache (default: the shared user cache).")]
TrustRemoteCode = Annotated[bool, typer.Option(help="Allow the model's own code (off by default).")]
Split = Annotated[
    str | None, typer.Option(help="Split of a dataset id, dataset folder or saved DatasetDict (e.g. train).")
]
Subset = Annotated[str | None, typer.Option(help="Subset (configuration name) of a dataset id or dataset folder.")]
OutputFormat = Annotated[
    str, typer.Option(help="Also write the selection as parquet (selected.parquet) or hf (selected/, save_to_disk).")
]
