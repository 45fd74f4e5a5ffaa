from pathlib import Path
from typing import List

import typer
from wasabi import msg

from ..data.shards import merge_target_files
from ..errors import DistillError
from ._app import app


@app.command("merge")
def merge_cli(
    output_path: Path = typer.Argument(..., help="The merged target file"),
    inputs: List[Path] = typer.Argument(
        ...,
        help="Target files or folders to join (e.g. shard outputs, or their directories of chunks)",
        exists=True,
    ),
):
    """Join target files (e.g. the outputs of `annotate --shard K/N`) in input-record order.

    Every doc is held in memory to be sorted. For millions of docs there is no need to merge:
    the training readers read a directory of shard outputs as one corpus.
    """
    try:
        n_docs = merge_target_files(inputs, output_path)
    except DistillError as err:
        msg.fail(str(err), exits=1)
    msg.good(f"Merged {n_docs} docs from {len(inputs)} file(s) into {output_path}")
