"""Students benchmark: where each student kind sits between the teacher's quality and the
tokenizer's speed.

Per dataset (a corpus folder with train/dev/test target files that a teacher annotated, and that
teacher's config), with every student kind of `init-config --arch`:

1. `spacy-distill word-vectors` on train + dev (once; cached per word): the static students'
   starting vectors; for the `-ctx` students (`static-ctx`, ...), `word-vectors
   --from-token-states` on `--hidden-train` + dev instead: each word's mean in-context state;
   for the `-tv` students (`static-subword-tv`, ...), `word-vectors --teacher-vocab`: the
   training words plus the whole words of the teacher tokenizer's vocabulary;
2. `init-config --arch A` (T=2, alpha=0.5), `spacy train` for `--seeds` seeds (system.seed),
   `spacy-distill export` (plain spaCy textcat; predictions checked by export: identical, or
   within 0.01 for the float16 tables of static students);
3. each exported student on the test texts, in a fresh process of an environment without torch
   (`--serve-python`; make it with `python -m venv .work/students/serve-venv` and
   `pip install spacy==3.8.* tqdm && pip install --no-deps -e .`; torch's absence is checked):
   macro-F1 and accuracy against gold, retention (student / teacher macro-F1) and agreement
   (argmax equal to the teacher's, whose test scores the target file holds), docs/s of
   `nlp.pipe` and of the tokenizer alone on the same texts in the same process (best of
   `--repeats`), peak RSS, and size on disk.

    OMP_NUM_THREADS=1 python benchmarks/students.py sst2 --corpus projects/llm_filter/corpus \
        --teacher projects/llm_filter/training/teacher.cfg --cwd projects/llm_filter

Writes results/students.{json,md} and results/students_<dataset>.png (retention vs throughput);
work files go to benchmarks/.work/students/<dataset>/. An existing results/students.json keeps
its other datasets: run one dataset at a time; a hand-written "## Reading" section at the end of
students.md is kept.
"""

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import fcntl
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
ARCHS = [
    "bow",
    "static",
    "static-cnn",
    "static-ensemble",
    "static-cnn-ensemble",
    "static-subword",
    "static-subword-mlp",
]

# Runs in a fresh interpreter per exported student: no torch, nothing else loaded.
MEASURE = r"""
import json, sys, time
import spacy
model, texts_path, repeats = sys.argv[1], sys.argv[2], int(sys.argv[3])
texts = json.load(open(texts_path, encoding="utf8"))
nlp = spacy.load(model)
def rate(run):
    start = time.perf_counter()
    run()
    return len(texts) / (time.perf_counter() - start)
list(nlp.pipe(texts[:100]))  # warm up
# Tokenizer and pipeline passes alternate, so that a burst of load on the shared machine falls
# on both alike; best of the repeats for each.
tokenizer = pipeline = 0.0
for _ in range(repeats):
    tokenizer = max(tokenizer, rate(lambda: list(nlp.tokenizer.pipe(texts, batch_size=1000))))
    pipeline = max(pipeline, rate(lambda: list(nlp.pipe(texts, batch_size=1000))))
cats = [doc.cats for doc in nlp.pipe(texts, batch_size=1000)]
print(json.dumps({
    "tokenizer_docs_per_s": tokenizer, "docs_per_s": pipeline,
    # VmHWM, not ru_maxrss: on Linux ru_maxrss survives exec, so a child of a big parent
    # would report the parent's peak.
    "peak_rss_mb": next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:")) / 1024,
    "torch_imported": "torch" in sys.modules, "cats": cats,
}))
"""


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')} +{time.time() - T0:6.0f}s] {message}", flush=True)


def run(cmd: List, log_file: Path, cwd: Optional[Path] = None) -> float:
    """Runs a subprocess with its output in log_file; returns its wall time, exits on failure."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    log("$ " + " ".join(shlex.quote(str(c)) for c in cmd))
    start = time.time()
    with log_file.open("w", encoding="utf8") as out:
        rc = subprocess.call(
            [str(c) for c in cmd],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=dict(os.environ, PYTHONUNBUFFERED="1"),
        )
    took = time.time() - start
    if rc != 0:
        print(log_file.read_text(encoding="utf8")[-4000:], file=sys.stderr)
        raise SystemExit(f"command failed (exit {rc}); log: {log_file}")
    log(f"  {took:.0f}s ({log_file.name})")
    return took


def test_data(path: Path):
    """Texts, gold labels and the teacher's argmax labels of a test target file."""
    import spacy
    from spacy.tokens import DocBin

    from spacy_distill.data.targets import get_target

    texts, gold, teacher = [], [], []
    for doc in DocBin().from_disk(path).get_docs(spacy.blank("en").vocab):
        target = get_target(doc)
        texts.append(doc.text)
        gold.append(max(doc.cats, key=doc.cats.get) if doc.cats else None)
        teacher.append(target.labels[int(target.scores.argmax())])
    return texts, gold, teacher


def scores(gold: List[str], pred: List[str], teacher: List[str]) -> Dict[str, float]:
    from sklearn.metrics import accuracy_score, f1_score

    return {
        "accuracy": accuracy_score(gold, pred),
        "macro_f1": f1_score(gold, pred, average="macro"),
        "agreement": accuracy_score(teacher, pred),
    }


def size_on_disk(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def mean_std(values: List[float]) -> Dict[str, float]:
    return {
        "mean": statistics.mean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
    }


def run_dataset(
    name: str,
    corpus: Path,
    teacher: Path,
    cwd: Path,
    work: Path,
    archs: List[str],
    seeds: List[int],
    max_steps: int,
    dims: int,
    repeats: int,
    serve_python: str,
    hidden_train: Optional[Path] = None,
    measure_only: bool = False,
    on_run=None,
    width: Optional[int] = None,
) -> dict:
    py = sys.executable
    wd = work / name
    logs = wd / "logs"
    wd.mkdir(parents=True, exist_ok=True)
    train, dev, test = (corpus / f"{s}.spacy" for s in ("train", "dev", "test"))
    vectors = wd / "word_vectors"
    timings: Dict[str, float] = {}
    # The plain vectors: for the static students other than -ctx and -tv (those have their own below).
    plain = [
        a
        for a in archs
        if a.startswith("static") and "-ctx" not in a and not a.split("+")[0].endswith("-tv")
    ]
    if plain and not (vectors / "meta.json").exists():
        timings["word_vectors"] = run(
            [
                py,
                "-m",
                "spacy_distill",
                "word-vectors",
                vectors,
                "--teacher",
                teacher,
                "--data",
                train,
                "--data",
                dev,
                "--dims",
                dims,
                "--cache",
                work / "word_cache.sqlite",
                "--no-progress",
                "--teacher.batch_size",
                64,
            ],
            logs / "word_vectors.log",
            cwd=cwd,
        )
    # "A-ctx" students start from vectors averaged from the teacher's in-context token states,
    # stored by `annotate --hidden token|both` in the training (and dev) files: no teacher call.
    ctx_vectors = wd / "word_vectors_ctx"
    if any("-ctx" in a for a in archs) and not (ctx_vectors / "meta.json").exists():
        if hidden_train is None:
            raise SystemExit(
                "the -ctx students need --hidden-train (annotated with --hidden token or both)"
            )
        timings["word_vectors_ctx"] = run(
            [
                py,
                "-m",
                "spacy_distill",
                "word-vectors",
                ctx_vectors,
                "--from-token-states",
                "--data",
                hidden_train,
                "--data",
                dev,
                "--dims",
                dims,
                "--no-progress",
            ],
            logs / "word_vectors_ctx.log",
            cwd=cwd,
        )
    # "A-tv" students start from vectors of the training words plus the teacher tokenizer's words.
    tv_vectors = wd / "word_vectors_tv"
    if (
        any(a.split("+")[0].endswith("-tv") for a in archs)
        and not (tv_vectors / "meta.json").exists()
    ):
        timings["word_vectors_tv"] = run(
            [
                py,
                "-m",
                "spacy_distill",
                "word-vectors",
                tv_vectors,
                "--teacher",
                teacher,
                "--data",
                train,
                "--data",
                dev,
                "--dims",
                dims,
                "--teacher-vocab",
                "--cache",
                work / "word_cache.sqlite",
                "--no-progress",
                "--teacher.batch_size",
                64,
            ],
            logs / "word_vectors_tv.log",
            cwd=cwd,
        )
    texts, gold, teacher_pred = test_data(test)
    texts_path = wd / "test_texts.json"
    texts_path.write_text(json.dumps(texts), encoding="utf8")
    result = {
        "dataset": name,
        "corpus": str(corpus),
        "teacher_config": str(teacher),
        "n_test": len(texts),
        "teacher": scores(gold, teacher_pred, teacher_pred),
        "timings": timings,
        "serve_python": serve_python,
        "runs": [],
    }
    for key, folder in (
        ("word_vectors", vectors),
        ("word_vectors_ctx", ctx_vectors),
        ("word_vectors_tv", tv_vectors),
    ):
        if (folder / "meta.json").exists():
            meta = json.loads((folder / "meta.json").read_text(encoding="utf8"))
            result[key] = {
                k: meta.get(k)
                for k in (
                    "n_words",
                    "dims",
                    "reduction",
                    "weighting",
                    "subwords",
                    "vocabulary_extra",
                )
            }
            result[key]["teacher"] = meta["teacher"]["id"]
            result[key]["method"] = meta.get("encoder", {}).get("method")
    log(
        f"=== {name}: teacher macro-F1 {result['teacher']['macro_f1']:.4f} on {len(texts)} test texts"
    )
    # --width: the vector students' embedding width (init-config --width), their results under "A-w<width>".
    names = {arch: named(arch, width) for arch in archs}
    # Seeds outermost, so that the machine's load (shared, noisy) falls on every student alike.
    for seed in seeds:
        for arch in archs:
            name_ = names[arch]
            tag = f"{name_}-s{seed}"
            if measure_only and not (wd / "models" / tag / "train_seconds.txt").exists():
                continue
            cfg = wd / "configs" / f"{name_}.cfg"
            if not cfg.exists():
                # "A+hidden": student A that also learns the teacher's pooled hidden states (--hidden doc),
                # from a training file annotated with `--hidden doc`.
                # "A+hidden-cos": the same with the cosine loss (scale-free: LLM states are large).
                base, hidden = arch.split("+")[0], "+hidden" in arch
                folder = vectors
                for suffix, source in (("-ctx", ctx_vectors), ("-tv", tv_vectors)):
                    if base.endswith(suffix):
                        folder, base = source, base[: -len(suffix)]
                extra = ["--vectors", folder] if base.startswith("static") else []
                if width is not None and base.startswith("static"):
                    extra += ["--width", width]
                if hidden:
                    if hidden_train is None:
                        raise SystemExit(
                            f"--archs {arch} needs --hidden-train (annotated with --hidden doc)"
                        )
                    extra += [
                        "--hidden",
                        "doc",
                        "--hidden-loss",
                        "cosine" if arch.endswith("-cos") else "mse",
                    ]
                run(
                    [
                        py,
                        "-m",
                        "spacy_distill",
                        "init-config",
                        cfg,
                        "--train",
                        hidden_train if hidden else train,
                        "--dev",
                        dev,
                        "--arch",
                        base,
                        "--max-steps",
                        max_steps,
                        *extra,
                    ],
                    logs / f"init_{name_}.log",
                )
            out = wd / "models" / tag
            timing = out / "train_seconds.txt"
            if timing.exists():  # trained by an earlier, interrupted run
                seconds = float(timing.read_text())
            else:
                shutil.rmtree(out, ignore_errors=True)
                seconds = run(
                    [py, "-m", "spacy", "train", cfg, "--output", out, "--system.seed", seed],
                    logs / f"train_{tag}.log",
                )
                timing.write_text(str(seconds))
            exported = wd / "exported" / tag
            if (
                not (exported / "meta.json").exists()
                or (exported / "meta.json").stat().st_mtime < timing.stat().st_mtime
            ):
                shutil.rmtree(exported, ignore_errors=True)
                run(
                    [py, "-m", "spacy_distill", "export", out / "model-best", exported],
                    logs / f"export_{tag}.log",
                )
            # The machine is shared: the 1-minute load average says how much the speed is to be trusted.
            load_avg = os.getloadavg()[0]
            measured = subprocess.run(
                [serve_python, "-c", MEASURE, str(exported), str(texts_path), str(repeats)],
                capture_output=True,
                text=True,
                check=True,
            )
            m = json.loads(measured.stdout.strip().splitlines()[-1])
            pred = [max(c, key=c.get) for c in m.pop("cats")]
            row = {
                "arch": name_,
                "seed": seed,
                "train_seconds": seconds,
                **scores(gold, pred, teacher_pred),
                **m,
                "throughput_fraction": m["docs_per_s"] / m["tokenizer_docs_per_s"],
                "size_mb": size_on_disk(exported) / 1e6,
                "load_avg_1m": load_avg,
            }
            row["retention"] = row["macro_f1"] / result["teacher"]["macro_f1"]
            log(
                f"  {tag}: macro-F1 {row['macro_f1']:.4f} retention {row['retention']:.3f} agreement "
                f"{row['agreement']:.3f} {row['docs_per_s']:.0f} docs/s ({row['throughput_fraction']:.2f}x tokenizer) "
                f"{row['peak_rss_mb']:.0f} MB {row['size_mb']:.1f} MB on disk (torch imported: "
                f"{row['torch_imported']}, "
                f"load {load_avg:.1f})"
            )
            result["runs"].append(row)
            summarise(result, list(names.values()))
            if on_run is not None:  # results so far, written after every student
                on_run(result)
    return result


def named(arch: str, width: Optional[int]) -> str:
    """The results name of student `arch`: with a --width, the vector students' name ends in -w<width>."""
    return (
        f"{arch}-w{width}"
        if width is not None and arch.split("+")[0].startswith("static")
        else arch
    )


def summarise(result: dict, archs: List[str]) -> None:
    keys = (
        "macro_f1",
        "accuracy",
        "retention",
        "agreement",
        "docs_per_s",
        "tokenizer_docs_per_s",
        "throughput_fraction",
        "peak_rss_mb",
        "size_mb",
        "train_seconds",
    )
    result["summary"] = {
        arch: {k: mean_std([r[k] for r in result["runs"] if r["arch"] == arch]) for k in keys}
        for arch in archs
        if any(r["arch"] == arch for r in result["runs"])
    }
    for arch, summary in result["summary"].items():  # older runs did not record the load
        loads = [
            r["load_avg_1m"] for r in result["runs"] if r["arch"] == arch and "load_avg_1m" in r
        ]
        if loads:
            summary["load_avg_1m"] = mean_std(loads)


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for arch, s in result["summary"].items():
        x, y = s["throughput_fraction"], s["retention"]
        ax.errorbar(
            x["mean"], y["mean"], xerr=x["std"], yerr=y["std"], fmt="o", capsize=3, label=arch
        )
        ax.annotate(
            arch, (x["mean"], y["mean"]), textcoords="offset points", xytext=(5, 5), fontsize=8
        )
    ax.axhline(0.97, color="grey", ls="--", lw=0.8)
    ax.axvline(0.3, color="grey", ls=":", lw=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("docs/s as a fraction of the tokenizer's docs/s (log)")
    ax.set_ylabel("retention (student / teacher macro-F1)")
    ax.set_title(
        f"{result['dataset']}: students vs teacher (dashed: 0.97 retention, dotted: 0.3x tokenizer)",
        fontsize=9,
    )
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def markdown(results: List[dict], command: str) -> str:
    lines = [
        "# Students benchmark: retention vs throughput",
        "",
        f"Last run `{command}` — {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {platform.platform()}, "
        f"{os.cpu_count()} CPUs shared with other jobs (throughput is comparable within a dataset's run only: "
        "the tokenizer-only rate is measured in the same process, right before each student), no GPU.",
        "",
        "Students from `init-config --arch A` (T=2, alpha=0.5), trained with `spacy train`, exported with "
        "`spacy-distill export`, measured in a fresh process without torch (checked). Retention = student macro-F1 / "
        "teacher macro-F1 on the test texts; agreement = share of test texts where the student's argmax equals the "
        "teacher's; throughput = `nlp.pipe` docs/s ÷ tokenizer-only docs/s on the same texts (best of the repeats). "
        "Mean ± std over the seeds.",
        "",
    ]
    for res in results:
        t = res["teacher"]
        lines += [
            f"## {res['dataset']} ({res['n_test']} test texts)",
            "",
            "Made by: "
            + "; ".join(f"`{c}`" for c in res.get("commands", []))
            + " (students are trained once and "
            "reused; `--measure-only` re-measures them all in one go).",
            "",
            f"Teacher (`{res['teacher_config']}`): macro-F1 {t['macro_f1']:.4f}, accuracy {t['accuracy']:.4f}.",
        ]
        for key, what in (
            ("word_vectors", "Word vectors (each word encoded alone)"),
            (
                "word_vectors_ctx",
                "In-context word vectors (`-ctx` students: mean stored token state per word)",
            ),
            (
                "word_vectors_tv",
                "Word vectors with the teacher's vocabulary (`-tv` students: training words "
                "+ the teacher tokenizer's whole words, each encoded alone)",
            ),
        ):
            if res.get(key):
                wv = res[key]
                sub = wv.get("subwords")
                extra = (
                    (
                        f"; {sub['buckets']} character {sub['min_n']}-{sub['max_n']}-gram vectors reconstruct "
                        f"{sub['r2']:.1%} of their variance"
                    )
                    if sub
                    else ""
                )
                tv = (wv.get("vocabulary_extra") or {}).get("n_teacher_words")
                tv = f", {tv} of them from the teacher's vocabulary" if tv else ""
                lines.append(
                    f"{what}: {wv['n_words']} words{tv} × "
                    f"{wv.get('dims') or wv['reduction'].get('dims_requested')} dims "
                    f"from `{wv['teacher']}` (PCA keeps {wv['reduction']['explained_variance']:.1%} of the "
                    f"standardised variance; weighting {wv['weighting']['method']}{extra})."
                )
        torch_runs = sum(bool(r.get("torch_imported")) for r in res["runs"])
        lines.append(
            f"Students measured with `{res.get('serve_python')}`; torch imported in {torch_runs} of "
            f"{len(res['runs'])} measurements."
        )
        lines += [
            "",
            f"![retention vs throughput](students_{res['dataset']}.png)",
            "",
            "| student | retention | macro-F1 | agreement | docs/s | × tokenizer | peak RSS "
            "(MB) | size (MB) | train (s) | load (1 min) |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for arch, s in res["summary"].items():
            c = lambda k, f: f"{s[k]['mean']:{f}} ± {s[k]['std']:{f}}"  # noqa: E731
            lines.append(
                f"| {arch} | {c('retention', '.3f')} | {c('macro_f1', '.4f')} | {c('agreement', '.3f')} | "
                f"{s['docs_per_s']['mean']:.0f} | {c('throughput_fraction', '.2f')} | {s['peak_rss_mb']['mean']:.0f} | "
                f"{s['size_mb']['mean']:.1f} | {s['train_seconds']['mean']:.0f} | "
                + (f"{s['load_avg_1m']['mean']:.1f} |" if "load_avg_1m" in s else "– |")
            )
        lines += [
            "",
            "Per seed: "
            + "; ".join(f"{r['arch']} s{r['seed']} {r['macro_f1']:.4f}" for r in res["runs"])
            + ".",
            "",
        ]
    return "\n".join(lines)


def main(
    dataset: str = typer.Argument(..., help="The dataset's name (results key, work folder)"),
    corpus: Path = typer.Option(
        ..., help="Folder with train/dev/test.spacy target files (the teacher's scores in them)"
    ),
    teacher: Path = typer.Option(
        ..., help="The teacher config that annotated them (for the word vectors)"
    ),
    cwd: Optional[Path] = typer.Option(
        None, help="Folder to run the teacher in (its config's relative paths)"
    ),
    archs: str = typer.Option(",".join(ARCHS), help="Comma-separated init-config architectures"),
    seeds: int = typer.Option(3, help="Training seeds per student"),
    max_steps: int = typer.Option(2000, help="Step budget per student (init-config --max-steps)"),
    dims: int = typer.Option(256, help="Word vector dimensions"),
    width: Optional[int] = typer.Option(
        None,
        help="Embedding width of the vector students (init-config --width; default: the "
        "vectors' dims); their results are named A-w<width>",
    ),
    repeats: int = typer.Option(3, help="Throughput: best of N passes over the test texts"),
    measure_only: bool = typer.Option(
        False, help="Train nothing: measure the students an earlier run trained"
    ),
    hidden_train: Optional[Path] = typer.Option(
        None,
        help="The training texts annotated with `--hidden doc` (A+hidden students) or "
        "`--hidden both` (also the A-ctx students, whose vectors average its token states and "
        "the dev file's)",
    ),
    serve_python: Optional[Path] = typer.Option(
        None,
        help="Python of an environment without torch to measure students in (default: "
        ".work/students/serve-venv if it exists; thinc imports an installed torch on `import "
        "spacy`)",
    ),
    work: Path = typer.Option(HERE / ".work" / "students", help="Work folder"),
    results_dir: Path = typer.Option(HERE / "results", help="Where the json, md and png go"),
):
    command = "OMP_NUM_THREADS=1 python benchmarks/students.py " + " ".join(sys.argv[1:])
    corpus, teacher = corpus.resolve(), teacher.resolve()
    json_path = results_dir / "students.json"

    def write(result: dict) -> None:
        result["command"] = command
        results_dir.mkdir(parents=True, exist_ok=True)
        # Runs of two datasets at once read and rewrite the same files: one at a time.
        work.mkdir(parents=True, exist_ok=True)
        with (work / "results.lock").open("w") as lock:  # in the work folder: not in git
            fcntl.flock(lock, fcntl.LOCK_EX)
            write_locked(result)

    def write_locked(result: dict) -> None:
        previous = (
            json.loads(json_path.read_text(encoding="utf8"))
            if json_path.exists()
            else {"datasets": {}}
        )
        # Runs of other students (an earlier invocation with other --archs) are kept.
        done = {(r["arch"], r["seed"]) for r in result["runs"]}
        kept = [
            r
            for r in previous["datasets"].get(dataset, {}).get("runs", [])
            if (r["arch"], r["seed"]) not in done
        ]
        commands = list(
            dict.fromkeys([*previous["datasets"].get(dataset, {}).get("commands", []), command])
        )
        result = {**result, "runs": kept + result["runs"], "commands": commands}
        order = list(dict.fromkeys([*ARCHS, *(r["arch"] for r in result["runs"])]))
        summarise(result, order)
        previous["datasets"][dataset] = result
        json_path.write_text(json.dumps(previous, indent=2), encoding="utf8")
        plot(result, results_dir / f"students_{dataset}.png")
        ordered = [previous["datasets"][k] for k in sorted(previous["datasets"])]
        md_path = results_dir / "students.md"
        # A hand-written "## Reading" section already in the report survives a rerun.
        old = md_path.read_text(encoding="utf8") if md_path.exists() else ""
        reading = old[old.index("\n## Reading") + 1 :] if "\n## Reading" in old else ""
        md_path.write_text(
            markdown(ordered, command) + ("\n" + reading if reading else ""), encoding="utf8"
        )
        log(f"wrote {json_path}, students.md, students_{dataset}.png")

    default_serve = work / "serve-venv" / "bin" / "python"
    serve = str(serve_python or (default_serve if default_serve.exists() else sys.executable))
    run_dataset(
        dataset,
        corpus,
        teacher,
        (cwd or teacher.parent).resolve(),
        work.resolve(),
        [a.strip() for a in archs.split(",") if a.strip()],
        list(range(seeds)),
        max_steps,
        dims,
        repeats,
        serve,
        hidden_train=hidden_train.resolve() if hidden_train else None,
        measure_only=measure_only,
        on_run=write,
        width=width,
    )


if __name__ == "__main__":
    typer.run(main)
