"""Copy the JSONL splits into corpus/, keeping only the first N records of each (0: all).

A slice lets a test (or a first try) run the whole project in a few minutes.
"""
import json
from collections import Counter
from pathlib import Path

import typer
from wasabi import msg

SPLITS = ("train", "dev", "test")


def main(
    input_dir: Path = typer.Argument(..., help="Folder with train/dev/test .jsonl", exists=True, file_okay=False),
    output_dir: Path = typer.Argument(..., help="Folder to write the (sliced) copies to"),
    limit: int = typer.Option(0, "--limit", help="Keep the first N records of each split (0: all)"),
):
    """Write OUTPUT_DIR/{train,dev,test}.jsonl: the first LIMIT records of each split."""
    output_dir.mkdir(parents=True, exist_ok=True)
    for split in SPLITS:
        lines = [line for line in (input_dir / f"{split}.jsonl").open(encoding="utf8") if line.strip()]
        if limit:
            lines = lines[:limit]
        (output_dir / f"{split}.jsonl").write_text("".join(lines), encoding="utf8")
        counts = Counter(json.loads(line).get("label") for line in lines)
        msg.good(f"{output_dir / split}.jsonl: {len(lines)} records {dict(sorted(counts.items()))}")


if __name__ == "__main__":
    typer.run(main)
