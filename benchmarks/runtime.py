"""Runtime benchmark: what each component of an exported filter costs per doc, before and after
the lean-runtime changes, with the garbage collector on and frozen.

Per dataset, a gold-trained bag-of-words student (convert -> init-config --arch bow -> spacy
train -> tune --action LABEL=block -> export --filter) is measured in fresh processes of an
environment without torch, 1 thread, rounds interleaved, best of --repeats per process:

* the tokenizer alone (docs/s, the speed floor every ratio is taken against);
* each component's marginal cost inside the pipeline: its `pipe` over docs the components before
  it already made (µs/doc) — what a user adding the filter to an existing pipeline pays;
* the full `nlp.pipe` (µs/doc and its ratio to the tokenizer), and the share of it spent in the
  garbage collector (timed with `gc.callbacks`);

under the code of --base (a git revision, checked out as a worktree; default: before the
batched n-gram features and the vectorised filter) and of the working tree, each with the
collector as it is and with `gc.freeze()` after loading. The same exported pipeline is loaded by
both: only the code differs.

    OMP_NUM_THREADS=1 python benchmarks/runtime.py --serve-python PATH/TO/torch-free/python

Writes results/runtime.{json,md,png}; work files in benchmarks/.work/runtime/.
"""

import json
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

import typer

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DATA = ROOT.parent / "shared" / "data"
T0 = time.time()

MEASURE = r"""
import gc, json, sys, time
freeze, model, texts_path, repeats = sys.argv[1] == "freeze", sys.argv[2], sys.argv[3], int(sys.argv[4])
import spacy
texts = json.load(open(texts_path, encoding="utf8"))
nlp = spacy.load(model)
list(nlp.pipe(texts[:200]))
if freeze:
    gc.freeze()
def best(run):
    times = []
    for _ in range(repeats):
        start = time.perf_counter(); run(); times.append(time.perf_counter() - start)
    return min(times) / len(texts) * 1e6
result = {"torch_imported": "torch" in sys.modules, "n_texts": len(texts)}
result["tokenizer_us"] = best(lambda: list(nlp.tokenizer.pipe(texts, batch_size=256)))
docs = list(nlp.tokenizer.pipe(texts, batch_size=256))
marginal = {}
for name, proc in nlp.pipeline:
    def run(proc=proc):
        for _ in proc.pipe(iter(docs), batch_size=256):
            pass
    marginal[name] = best(run)
    docs = list(proc.pipe(iter(docs), batch_size=256))
result["marginal_us"] = marginal
gc_time = [0.0, None]
def on_gc(phase, info):
    if phase == "start":
        gc_time[1] = time.perf_counter()
    elif gc_time[1] is not None:
        gc_time[0] += time.perf_counter() - gc_time[1]
gc.callbacks.append(on_gc)
start = time.perf_counter()
list(nlp.pipe(texts, batch_size=256))
total = time.perf_counter() - start
gc.callbacks.remove(on_gc)
result["gc_share"] = gc_time[0] / total
result["pipeline_us"] = best(lambda: list(nlp.pipe(texts, batch_size=256)))
result["ratio_to_tokenizer"] = result["tokenizer_us"] / result["pipeline_us"]
result["loadavg"] = open("/proc/loadavg").read().split()[:3]
print(json.dumps(result))
"""


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')} +{time.time() - T0:6.0f}s] {message}", flush=True)


def run(cmd: List[str], cwd: Optional[Path] = None, env: Optional[Dict[str, str]] = None) -> str:
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(
            f"{shlex.join(cmd)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        )
    return done.stdout


def labels_of(path: Path) -> List[str]:
    found: List[str] = []
    for line in path.read_text(encoding="utf8").splitlines():
        label = json.loads(line)["label"]
        if label not in found:
            found.append(label)
    return sorted(found)


def build_student(dataset: str, work: Path, steps: int) -> Path:
    """A gold-trained bow student, tuned for a filter that blocks the dataset's first label."""
    exported = work / "exported"
    if (exported / "meta.json").exists():
        return exported
    work.mkdir(parents=True, exist_ok=True)
    cli = [sys.executable, "-m", "spacy_distill"]
    labels = labels_of(DATA / dataset / "train.jsonl")
    for split in ("train", "dev"):
        run(
            cli
            + [
                "convert",
                str(DATA / dataset / f"{split}.jsonl"),
                str(work / f"{split}.spacy"),
                "--labels",
                ",".join(labels),
                "--exclusive",
            ]
        )
    run(
        cli
        + [
            "init-config",
            str(work / "student.cfg"),
            "--train",
            str(work / "train.spacy"),
            "--dev",
            str(work / "dev.spacy"),
            "--arch",
            "bow",
            "--max-steps",
            str(steps),
        ]
    )
    log(f"{dataset}: training a bow student ({steps} steps)")
    run(
        [
            sys.executable,
            "-m",
            "spacy",
            "train",
            str(work / "student.cfg"),
            "--output",
            str(work / "training"),
        ]
    )
    run(
        cli
        + [
            "tune",
            str(work / "training" / "model-best"),
            "--data",
            str(work / "dev.spacy"),
            "--output",
            str(work / "tuned"),
            "--action",
            f"{labels[0]}=block",
            "--escalation-rate",
            "0.02",
        ]
    )
    run(cli + ["export", str(work / "tuned"), str(exported), "--filter"])
    return exported


def base_worktree(base: str, work: Path) -> Path:
    path = work / f"base-{base}"
    if not path.exists():
        run(["git", "worktree", "add", "--detach", str(path), base], cwd=ROOT)
    return path


def main(
    datasets: List[str] = typer.Option(
        ["tweeteval_sentiment", "sst2", "sms_spam", "ag_news"], "--dataset"
    ),
    serve_python: Path = typer.Option(
        ...,
        "--serve-python",
        help="Python of an environment without torch, with spaCy and spacy-distill (editable)",
    ),
    base: str = typer.Option("bf19c98", "--base", help="The git revision to compare with"),
    steps: int = typer.Option(600, "--steps"),
    rounds: int = typer.Option(3, "--rounds"),
    repeats: int = typer.Option(3, "--repeats"),
    limit: int = typer.Option(3000, "--limit", help="Test texts per dataset"),
):
    work = HERE / ".work" / "runtime"
    work.mkdir(parents=True, exist_ok=True)
    base_path = base_worktree(base, work)
    codes = {"base": str(base_path), "new": str(ROOT)}
    results: Dict[str, Dict] = {}
    for dataset in datasets:
        model = build_student(dataset, work / dataset, steps)
        texts = [
            json.loads(line)["text"]
            for line in (DATA / dataset / "test.jsonl").read_text(encoding="utf8").splitlines()
        ][:limit]
        texts_path = work / dataset / "texts.json"
        texts_path.write_text(json.dumps(texts), encoding="utf8")
        runs: Dict[str, List[Dict]] = {}
        for round_index in range(rounds):
            for code, path in codes.items():
                for gc_mode in ("on", "freeze"):
                    env = {
                        **os.environ,
                        "OMP_NUM_THREADS": "1",
                        "OPENBLAS_NUM_THREADS": "1",
                        "PYTHONPATH": path,
                    }
                    out = run(
                        [
                            str(serve_python),
                            "-c",
                            MEASURE,
                            gc_mode,
                            str(model),
                            str(texts_path),
                            str(repeats),
                        ],
                        env=env,
                    )
                    measured = json.loads(out.strip().splitlines()[-1])
                    if measured["torch_imported"]:
                        raise RuntimeError("torch was imported by the exported student")
                    runs.setdefault(f"{code}/gc-{gc_mode}", []).append(measured)
            log(
                f"{dataset}: round {round_index + 1}/{rounds} done (load {open('/proc/loadavg').read().split()[:3]})"
            )
        summary = {}
        for key, measured in runs.items():
            # Best of the rounds per figure: the least disturbed measurement on a shared machine.
            fastest = min(measured, key=lambda m: m["pipeline_us"])
            summary[key] = {
                "tokenizer_us": min(m["tokenizer_us"] for m in measured),
                "pipeline_us": fastest["pipeline_us"],
                "ratio_to_tokenizer": max(m["ratio_to_tokenizer"] for m in measured),
                "marginal_us": {
                    name: min(m["marginal_us"][name] for m in measured)
                    for name in fastest["marginal_us"]
                },
                "gc_share": fastest["gc_share"],
                "loadavg": [m["loadavg"] for m in measured],
            }
        results[dataset] = summary
    command = "OMP_NUM_THREADS=1 python benchmarks/runtime.py " + " ".join(
        shlex.quote(a) for a in sys.argv[1:]
    )
    payload = {
        "command": command,
        "date": time.strftime("%Y-%m-%d"),
        "machine": platform.platform(),
        "cpus": os.cpu_count(),
        "base": base,
        "results": results,
    }
    out_dir = HERE / "results"
    (out_dir / "runtime.json").write_text(json.dumps(payload, indent=2), encoding="utf8")
    (out_dir / "runtime.md").write_text(markdown(payload), encoding="utf8")
    plot(payload, out_dir / "runtime.png")
    log("wrote results/runtime.{json,md,png}")


def markdown(payload: Dict) -> str:
    lines = [
        "# Runtime: marginal cost per component, before and after",
        "",
        f"Command: `{payload['command']}` ({payload['date']}, {payload['cpus']} shared CPUs, {payload['machine']}).",
        f"`base` is {payload['base']}; `new` the working tree. µs/doc, best over rounds; ratio = tokenizer-only "
        "docs/s ÷ full-pipeline docs/s in the same process.",
        "",
    ]
    for dataset, summary in payload["results"].items():
        comps = list(next(iter(summary.values()))["marginal_us"])
        lines += [
            f"## {dataset}",
            "",
            "| code / GC | tokenizer | "
            + " | ".join(comps)
            + " | full pipeline | × tokenizer | GC share | load (1/5/15 min) |",
            "|---" * (len(comps) + 6) + "|",
        ]
        for key, s in summary.items():
            lines.append(
                f"| {key} | {s['tokenizer_us']:.1f} | "
                + " | ".join(f"{s['marginal_us'][c]:.1f}" for c in comps)
                + f" | {s['pipeline_us']:.1f} | {s['ratio_to_tokenizer']:.2f} | "
                f"{s['gc_share']:.1%} | {' '.join(s['loadavg'][0])} |"
            )
        lines.append("")
    return "\n".join(lines)


def plot(payload: Dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = list(payload["results"])
    fig, axes = plt.subplots(1, len(datasets), figsize=(4 * len(datasets), 3.6), squeeze=False)
    for ax, dataset in zip(axes[0], datasets):
        summary = payload["results"][dataset]
        keys = [k for k in summary if k.endswith("gc-on")]
        comps = list(summary[keys[0]]["marginal_us"])
        bottom = [0.0] * len(keys)
        for comp in ["tokenizer"] + comps:
            values = [
                summary[k]["tokenizer_us"]
                if comp == "tokenizer"
                else summary[k]["marginal_us"][comp]
                for k in keys
            ]
            ax.bar([k.split("/")[0] for k in keys], values, bottom=bottom, label=comp)
            bottom = [b + v for b, v in zip(bottom, values)]
        ax.set_title(dataset)
        ax.set_ylabel("µs/doc (stacked marginal costs)")
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    typer.run(main)
