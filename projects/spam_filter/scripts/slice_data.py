"""Copy the train/dev/test records into corpus/{train,dev,test}.jsonl, optionally cut down.

Input: JSONL or CSV (`text`, `label` or `labels`, optional `id`), read and checked by
spacy-distill's record reader (a malformed line stops the step, named by file and line).
`--limit N` keeps the first N records of each split (a quick end-to-end run; on a file sorted
by text that is not a sample); `--train-sample N` keeps a seeded random sample of N training
records, in their original order, and leaves dev and test whole.
"""

import json
import random
from collections import Counter
from pathlib import Path

import typer
from wasabi import msg

from spacy_distill.data.records import Record, read_records

SPLITS = ("train", "dev", "test")


def main(
    train: Path = typer.Argument(
        ..., help="Training records (JSONL or CSV)", exists=True, dir_okay=False
    ),
    dev: Path = typer.Argument(..., help="Development records", exists=True, dir_okay=False),
    test: Path = typer.Argument(..., help="Test records", exists=True, dir_okay=False),
    output_dir: Path = typer.Argument(..., help="Folder to write train/dev/test.jsonl to"),
    limit: int = typer.Option(0, "--limit", help="Keep the first N records of each split (0: all)"),
    train_sample: int = typer.Option(
        0, "--train-sample", help="Keep a seeded random sample of N training records (0: all)"
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of --train-sample"),
    exclusive_only: bool = typer.Option(
        False,
        "--exclusive-only",
        help="Refuse multi-label records (`labels` lists): the project's teacher is an exclusive classifier",
    ),
):
    """Write OUTPUT_DIR/{train,dev,test}.jsonl."""
    output_dir.mkdir(parents=True, exist_ok=True)
    for split, path in zip(SPLITS, (train, dev, test)):
        records, errors = [], []
        for item in read_records(path):
            (records if isinstance(item, Record) else errors).append(item)
        if errors:
            for error in errors[:20]:
                msg.fail(str(error))
            msg.fail(f"{path}: {len(errors)} malformed record(s); fix them (see above)", exits=1)
        multi = next((r for r in records if r.multi_label), None)
        if exclusive_only and multi is not None:
            msg.fail(
                f'{path}:{multi.line}: a multi-label record ("labels": [...]); this project\'s teacher '
                "gives one label per text. For multi-label data make its textcat a textcat_multilabel "
                "(configs/) and leave out --exclusive-only",
                exits=1,
            )
        if limit:
            records = records[:limit]
        if split == "train" and train_sample and train_sample < len(records):
            keep = sorted(random.Random(seed).sample(range(len(records)), train_sample))
            records = [records[i] for i in keep]
        with (output_dir / f"{split}.jsonl").open("w", encoding="utf8") as out:
            for record in records:
                row = {"text": record.text}
                if record.labels is not None:
                    row["labels" if record.multi_label else "label"] = (
                        list(record.labels) if record.multi_label else record.labels[0]
                    )
                if record.id is not None:
                    row["id"] = record.id
                out.write(json.dumps(row, ensure_ascii=False) + "\n")
        counts = Counter(label for record in records for label in (record.labels or ("(none)",)))
        msg.good(
            f"{output_dir / split}.jsonl: {len(records)} records from {path} {dict(sorted(counts.items()))}"
        )


if __name__ == "__main__":
    typer.run(main)
