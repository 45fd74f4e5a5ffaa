"""Hidden-state distillation benchmark: does matching the teacher's hidden states, on top of its
soft labels, give a better CNN student?

Per dataset (a directory with train/dev/test.jsonl), with the fine-tuned MiniLM-L6
spacy-transformers teacher that `core_distillation.py` trains (the strongest teacher we have on
sst2 and sms_spam: test accuracy 0.8825 and 0.9893; `--teacher` picks another):

1. `spacy-distill annotate --hidden both` on train and dev: soft labels plus the teacher's
   last-layer states, pooled per doc and aligned to spaCy tokens (384 dims, float16);
2. `spacy-distill init-config --arch cnn` with nothing more (`soft`), with `--hidden doc` and
   with `--hidden token`, then plain `spacy train`, for `--seeds` seeds each (system.seed; the
   three settings read the same target files);
3. every model on the test texts: accuracy and macro-F1 against gold, agreement with the
   teacher's argmax; training wall time from the `spacy train` subprocess.

`--train-limit N` trains on the first N training texts only (the low-data setting, where a
richer signal per text should matter most); dev and test stay whole.

    OMP_NUM_THREADS=1 python benchmarks/hidden_states.py ../shared/data/sst2 ../shared/data/sms_spam
    OMP_NUM_THREADS=1 python benchmarks/hidden_states.py ../shared/data/sst2 --train-limit 500 --tag low

`--only-seed K` trains one seed's runs and writes no results (one process per seed, then one
without it to collect the rows). Writes results/hidden_states[_TAG].{json,md} (a hand-written
"## Reading" section in the .md is kept); work files go to benchmarks/.work/hidden_states/.
"""

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import json
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

import typer

HERE = Path(__file__).resolve().parent
T0 = time.time()
SETTINGS = {"soft": [], "soft+doc": ["--hidden", "doc"], "soft+token": ["--hidden", "token"]}


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')} +{time.time() - T0:6.0f}s] {message}", flush=True)


def run(cmd: List, log_file: Path) -> float:
    """Runs a subprocess with its output in log_file; returns its wall time, exits on failure."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    log("$ " + " ".join(shlex.quote(str(c)) for c in cmd))
    start = time.time()
    with log_file.open("w", encoding="utf8") as out:
        rc = subprocess.call(
            [str(c) for c in cmd],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=dict(os.environ, PYTHONUNBUFFERED="1"),
        )
    took = time.time() - start
    if rc != 0:
        print(log_file.read_text(encoding="utf8")[-4000:], file=sys.stderr)
        raise SystemExit(f"command failed (exit {rc}); log: {log_file}")
    log(f"  {took:.0f}s ({log_file.name})")
    return took


def read_jsonl(path: Path) -> List[dict]:
    return [
        json.loads(line) for line in path.read_text(encoding="utf8").splitlines() if line.strip()
    ]


def predict(model: Path, texts: List[str]) -> List[str]:
    import spacy

    nlp = spacy.load(model)
    return [max(doc.cats, key=doc.cats.get) for doc in nlp.pipe(texts, batch_size=64)]


def scores(gold: List[str], pred: List[str], teacher: List[str]) -> Dict[str, float]:
    from sklearn.metrics import accuracy_score, f1_score

    return {
        "accuracy": accuracy_score(gold, pred),
        "macro_f1": f1_score(gold, pred, average="macro"),
        "agreement": accuracy_score(teacher, pred),
    }


def mean_std(values: List[float]) -> Dict[str, float]:
    return {
        "mean": statistics.mean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
    }


def run_dataset(
    data: Path, work: Path, teacher: Path, seeds: List[int], train_limit: int, max_steps: int
) -> dict:
    py = sys.executable
    name = data.name
    wd = work / name
    logs = wd / "logs"
    wd.mkdir(parents=True, exist_ok=True)
    log(f"=== {name}: teacher {teacher}")
    train_in = data / "train.jsonl"
    if train_limit:
        rows = read_jsonl(train_in)[:train_limit]
        train_in = wd / "train.jsonl"
        train_in.write_text(
            "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf8"
        )
    timings: Dict[str, float] = {}
    for split, source in (("train", train_in), ("dev", data / "dev.jsonl")):
        out = wd / f"{split}.spacy"
        if not out.exists():
            timings[f"annotate_{split}"] = run(
                [
                    py,
                    "-m",
                    "spacy_distill",
                    "annotate",
                    source,
                    out,
                    "--teacher",
                    teacher,
                    "--hidden",
                    "both",
                    "--no-cache",
                    "--no-progress",
                ],
                logs / f"annotate_{split}.log",
            )
    test = read_jsonl(data / "test.jsonl")
    texts, gold = [r["text"] for r in test], [r["label"] for r in test]
    teacher_file = wd / "teacher_test.json"  # shared by the processes of one dataset (--only-seed)
    if not teacher_file.exists():
        log(f"teacher on {len(texts)} test texts")
        teacher_file.write_text(json.dumps(predict(teacher, texts)), encoding="utf8")
    teacher_pred = json.loads(teacher_file.read_text(encoding="utf8"))
    n_train = sum(1 for _ in train_in.open(encoding="utf8"))
    result = {
        "dataset": name,
        "n_train": n_train,
        "n_test": len(texts),
        "teacher": {"path": str(teacher), **scores(gold, teacher_pred, teacher_pred)},
        # Soft labels plus doc- and token-level states (float16) per training doc, on disk.
        "target_bytes_per_doc": (wd / "train.spacy").stat().st_size / n_train,
        "timings": timings,
        "runs": [],
    }
    for setting, extra in SETTINGS.items():
        cfg = wd / "configs" / f"{setting}.cfg"
        if not cfg.exists():
            cfg.parent.mkdir(exist_ok=True)
            run(
                [
                    py,
                    "-m",
                    "spacy_distill",
                    "init-config",
                    cfg,
                    "--train",
                    wd / "train.spacy",
                    "--dev",
                    wd / "dev.spacy",
                    "--arch",
                    "cnn",
                    "--max-steps",
                    str(max_steps),
                    *extra,
                ],
                logs / f"init_{setting}.log",
            )
    # Seeds outermost, so that the machine's load (shared, noisy) falls on every setting alike.
    # Each finished run leaves its row in rows/: a rerun (or a process per seed) trains only
    # what is missing.
    for seed in seeds:
        for setting in SETTINGS:
            tag = f"{setting}-s{seed}"
            row_file = wd / "rows" / f"{tag}.json"
            if not row_file.exists():
                out = wd / "models" / tag
                shutil.rmtree(out, ignore_errors=True)
                cfg = wd / "configs" / f"{setting}.cfg"
                seconds = run(
                    [py, "-m", "spacy", "train", cfg, "--output", out, "--system.seed", str(seed)],
                    logs / f"train_{tag}.log",
                )
                meta = json.loads((out / "model-best" / "meta.json").read_text(encoding="utf8"))
                row = {
                    "setting": setting,
                    "seed": seed,
                    "train_seconds": seconds,
                    "dev_score": meta["performance"].get("cats_score"),
                    **scores(gold, predict(out / "model-best", texts), teacher_pred),
                }
                row_file.parent.mkdir(exist_ok=True)
                row_file.write_text(json.dumps(row), encoding="utf8")
            row = json.loads(row_file.read_text(encoding="utf8"))
            log(
                f"  {tag}: acc {row['accuracy']:.4f} macro-F1 {row['macro_f1']:.4f} agreement {row['agreement']:.4f}"
            )
            result["runs"].append(row)
    result["summary"] = {
        setting: {
            key: mean_std([r[key] for r in result["runs"] if r["setting"] == setting])
            for key in ("macro_f1", "accuracy", "agreement", "train_seconds")
        }
        for setting in SETTINGS
    }
    return result


def markdown(results: List[dict], command: str, tag: str) -> str:
    lines = [
        f"# Hidden-state distillation benchmark{f' ({tag})' if tag else ''}",
        "",
        f"`{command}` — {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {platform.platform()}, "
        f"{os.cpu_count()} CPUs (shared with other jobs: training times are comparable within this run only), no GPU.",
        "",
        "CNN students (`init-config --arch cnn`: tok2vec width 64, T=2, alpha=0.5) trained with `spacy train` on the "
        "teacher's soft labels only (`soft`), plus doc-level (`soft+doc`) or token-level (`soft+token`) hidden-state "
        "distillation (`--hidden doc|token`: linear map from the student's width to the teacher's 384, MSE, weight 1). "
        "Mean ± std over the seeds; agreement = share of test texts where the student's argmax equals the teacher's.",
        "",
    ]
    for res in results:
        t = res["teacher"]
        lines += [
            f"## {res['dataset']} ({res['n_train']} train texts, {res['n_test']} test)",
            "",
            f"Teacher `{t['path']}`: accuracy {t['accuracy']:.4f}, macro-F1 {t['macro_f1']:.4f}. "
            + "Target file with doc- and token-level states: "
            f"{res['target_bytes_per_doc'] / 1000:.1f} kB per training text.",
            "",
            "| student | macro-F1 | accuracy | agreement w/ teacher | training time (s) |",
            "|---|---:|---:|---:|---:|",
        ]
        for setting, s in res["summary"].items():
            cell = lambda key, fmt: f"{s[key]['mean']:{fmt}} ± {s[key]['std']:{fmt}}"  # noqa: E731
            lines.append(
                f"| {setting} | {cell('macro_f1', '.4f')} | {cell('accuracy', '.4f')} | "
                f"{cell('agreement', '.4f')} | {cell('train_seconds', '.0f')} |"
            )
        lines.append("")
        lines.append(
            "Per seed: "
            + "; ".join(f"{r['setting']} s{r['seed']} {r['macro_f1']:.4f}" for r in res["runs"])
            + "."
        )
        lines.append("")
    return "\n".join(lines)


def main(
    datasets: List[Path] = typer.Argument(..., help="Dataset folders with train/dev/test.jsonl"),
    teacher: Optional[Path] = typer.Option(
        None,
        help="Teacher pipeline (default: .work/<dataset>/teacher/model-best of core_distillation.py)",
    ),
    seeds: int = typer.Option(3, help="Training seeds per setting"),
    train_limit: int = typer.Option(0, help="Train on the first N training texts only (0: all)"),
    max_steps: int = typer.Option(20000, help="Step budget per student (init-config --max-steps)"),
    only_seed: Optional[int] = typer.Option(
        None,
        help="Train this seed's runs only and write no results (run one process per seed, then once without it)",
    ),
    tag: str = typer.Option("", help="Suffix of the work folder and result files"),
    work: Path = typer.Option(HERE / ".work" / "hidden_states", help="Work folder"),
    results_dir: Path = typer.Option(HERE / "results", help="Where the json and md go"),
):
    work = work / tag if tag else work
    command = "OMP_NUM_THREADS=1 python benchmarks/hidden_states.py " + " ".join(sys.argv[1:])
    results = []
    for data in datasets:
        model = teacher or HERE / ".work" / data.name / "teacher" / "model-best"
        if not (model / "meta.json").exists():
            raise SystemExit(
                f"no teacher at {model}: run benchmarks/core_distillation.py {data} first, or pass --teacher"
            )
        seed_list = [only_seed] if only_seed is not None else list(range(seeds))
        results.append(run_dataset(data.resolve(), work, model, seed_list, train_limit, max_steps))
        if only_seed is not None:
            continue
        stem = "hidden_states" + (f"_{tag}" if tag else "")
        results_dir.mkdir(parents=True, exist_ok=True)
        (results_dir / f"{stem}.json").write_text(
            json.dumps({"command": command, "results": results}, indent=2), encoding="utf8"
        )
        md_path = results_dir / f"{stem}.md"
        # A hand-written "## Reading" section already in the report survives a rerun.
        old = md_path.read_text(encoding="utf8") if md_path.exists() else ""
        reading = old[old.index("\n## Reading") + 1 :] if "\n## Reading" in old else ""
        md_path.write_text(
            markdown(results, command, tag) + ("\n" + reading if reading else ""), encoding="utf8"
        )
        log(f"wrote {results_dir / stem}.{{json,md}}")


if __name__ == "__main__":
    typer.run(main)
