"""Scale benchmark for `annotate`: peak memory against corpus size, Ray backend throughput, and a
projected cost for 10M texts.

What it measures, all through the public CLI (`python -m spacy_distill annotate`), each run in
its own subprocess:

1. Peak RSS (the annotate process's `ru_maxrss`, read by a small wrapper process around it, so
   earlier runs never count) on N short synthetic texts (default 10k, 100k, 1M), writing a
   directory of `.spacy` chunks with the teacher cache on (a fresh SQLite file per run), as a
   user would run it. One extra run writes the 100k corpus as a single `.spacy` file, the
   in-memory layout, for contrast.
2. Throughput of the plain backend and of the Ray backend with 1 and 2 teacher actors on the
   same texts (`--no-cache`), measured one after another in the same run; the Ray figures
   include starting a local Ray (`ray.init`) and the actors, as a user pays them.
3. A projection for 10M texts from the measured rates, bytes per doc and cache bytes per text.

The teacher is a small spaCy pipeline built in benchmarks/.work/scale/: `textcat` (exclusive,
two labels) trained for a few steps on synthetic texts, either a bag-of-words model (`bow`, the
default for the memory runs: fast enough that 1M texts take minutes) or spaCy's default
CNN+BoW ensemble (`cnn`, slower per text, so the teacher's share of the work is larger; used
for the throughput runs). Texts are 5-15 words from a 300-word vocabulary plus a running number,
so no two are alike and the cache never dedupes.

    python benchmarks/scale.py --sizes 10000,100000,1000000 --throughput-size 20000

Results: benchmarks/results/scale.{json,md,png}. Work files: benchmarks/.work/scale/ (git-ignored).
"""

import json
import os
import platform
import random
import shutil
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Dict, List, Optional

import typer

HERE = Path(__file__).resolve().parent
WORK = HERE / ".work" / "scale"
RESULTS = HERE / "results"
PYTHON = sys.executable
TARGET_N = 10_000_000

# Runs the command given as JSON in argv[1] and prints its peak RSS (KiB on Linux) and wall time.
# A fresh wrapper per run: RUSAGE_CHILDREN is a maximum over all of a process's children.
WRAPPER = """
import json, resource, subprocess, sys, time
start = time.perf_counter()
proc = subprocess.run(json.loads(sys.argv[1]), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
wall = time.perf_counter() - start
print(json.dumps({"rc": proc.returncode, "wall_s": wall,
                  "max_rss_kib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
                  "tail": proc.stdout[-3000:]}))
"""


def build_teacher(kind: str) -> Path:
    import spacy
    from spacy.training import Example

    path = WORK / f"teacher-{kind}"
    if (path / "meta.json").exists():
        return path
    nlp = spacy.blank("en")
    if kind == "bow":
        model = {
            "@architectures": "spacy.TextCatBOW.v3",
            "exclusive_classes": True,
            "ngram_size": 1,
            "no_output_layer": False,
        }
        textcat = nlp.add_pipe("textcat", config={"model": model})
    else:
        textcat = nlp.add_pipe("textcat")  # spaCy's default: CNN tok2vec + BoW ensemble
    textcat.add_label("pos")
    textcat.add_label("neg")
    rng = random.Random(1)
    examples = []
    for i in range(200):
        text = synthetic_text(rng, i)
        label = "pos" if len(text) % 2 else "neg"
        examples.append(
            Example.from_dict(
                nlp.make_doc(text),
                {"cats": {"pos": float(label == "pos"), "neg": float(label == "neg")}},
            )
        )
    optimizer = nlp.initialize(lambda: examples)
    for _ in range(3):
        nlp.update(examples, sgd=optimizer)
    nlp.to_disk(path)
    return path


VOCAB = [f"w{i}" for i in range(300)]


def synthetic_text(rng: random.Random, i: int) -> str:
    return " ".join(rng.choice(VOCAB) for _ in range(rng.randint(5, 15))) + f" n{i}"


def corpus(n: int) -> Path:
    path = WORK / f"texts-{n}.jsonl"
    if path.exists():
        return path
    rng = random.Random(n)
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", encoding="utf8") as file_:
        for i in range(n):
            file_.write(json.dumps({"text": synthetic_text(rng, i)}) + "\n")
    tmp.replace(path)
    return path


def measure(args: List[str], env: Optional[Dict[str, str]] = None) -> Dict:
    cmd = [PYTHON, "-m", "spacy_distill", "annotate", *args, "--no-progress"]
    out = subprocess.run(
        [PYTHON, "-c", WRAPPER, json.dumps(cmd)],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        check=True,
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    if result["rc"] != 0:
        raise RuntimeError(f"annotate failed ({' '.join(cmd)}):\n{result['tail']}")
    return result


def dir_bytes(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def fresh(path: Path) -> Path:
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()
    return path


def main(
    sizes: str = typer.Option("10000,100000,1000000", help="Corpus sizes for the memory runs"),
    throughput_size: int = typer.Option(20000, help="Texts for the backend throughput runs"),
    single_file_size: int = typer.Option(
        100000, help="Also write this size as one .spacy file (0: skip)"
    ),
    memory_teacher: str = typer.Option("bow", help="Teacher of the memory runs: bow or cnn"),
    throughput_teacher: str = typer.Option(
        "cnn", help="Teacher of the throughput runs: bow or cnn"
    ),
    chunk_size: int = typer.Option(10000, help="Docs per chunk file"),
    results: Path = typer.Option(
        RESULTS / "scale", help="Results prefix (.json, .md, .png are added)"
    ),
    render_only: bool = typer.Option(
        False, "--render-only", help="Rewrite the .md and .png from the .json, measuring nothing"
    ),
):
    if render_only:
        report = json.loads(results.with_suffix(".json").read_text(encoding="utf8"))
        results.with_suffix(".md").write_text(render(report), encoding="utf8")
        plot(report, results.with_suffix(".png"))
        return
    WORK.mkdir(parents=True, exist_ok=True)
    env = {"OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    started = datetime.now(timezone.utc)
    report: Dict = {
        "command": "python benchmarks/scale.py " + " ".join(sys.argv[1:]),
        "date": started.isoformat(timespec="seconds"),
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "load_avg_at_start": os.getloadavg(),
        },
        "chunk_size": chunk_size,
        "memory_teacher": memory_teacher,
        "throughput_teacher": throughput_teacher,
    }

    # 2. Throughput: plain vs Ray with 1 and 2 actors, one after another on the same texts.
    teacher = build_teacher(throughput_teacher)
    data = corpus(throughput_size)
    runs = []
    for name, extra in [
        ("plain", []),
        ("ray, 1 actor", ["--backend", "ray", "--ray-actors", "1"]),
        ("ray, 2 actors", ["--backend", "ray", "--ray-actors", "2"]),
    ]:
        out = fresh(WORK / "throughput-out")
        result = measure(
            [
                str(data),
                str(out),
                "--teacher",
                str(teacher),
                "--no-cache",
                "--chunk-size",
                str(chunk_size),
                *extra,
            ],
            env,
        )
        runs.append(
            {
                "backend": name,
                "n": throughput_size,
                "wall_s": round(result["wall_s"], 2),
                "docs_per_s": round(throughput_size / result["wall_s"], 1),
                "max_rss_mib": round(result["max_rss_kib"] / 1024, 1),
            }
        )
        print(runs[-1], flush=True)
    for run in runs:
        run["speed_vs_plain"] = round(runs[0]["wall_s"] / run["wall_s"], 3)
    report["throughput"] = runs

    # 1. Peak RSS against corpus size (directory output, cache on).
    teacher = build_teacher(memory_teacher)
    memory = []
    layouts = [(int(n), "chunks") for n in sizes.split(",")]
    if single_file_size:
        layouts.append((single_file_size, "one file"))
    for n, layout in layouts:
        data = corpus(n)
        out = fresh(WORK / ("mem-out.spacy" if layout == "one file" else "mem-out"))
        cache = fresh(WORK / "mem-cache.sqlite")
        for suffix in ("-wal", "-shm"):
            fresh(WORK / f"mem-cache.sqlite{suffix}")
        result = measure(
            [
                str(data),
                str(out),
                "--teacher",
                str(teacher),
                "--cache",
                str(cache),
                "--chunk-size",
                str(chunk_size),
            ],
            env,
        )
        row = {
            "n": n,
            "output": layout,
            "max_rss_mib": round(result["max_rss_kib"] / 1024, 1),
            "wall_s": round(result["wall_s"], 1),
            "docs_per_s": round(n / result["wall_s"], 1),
            "output_bytes": dir_bytes(out),
            "cache_bytes": dir_bytes(cache),
            "input_bytes": data.stat().st_size,
        }
        memory.append(row)
        print(row, flush=True)
    report["memory"] = memory

    # 3. Projection for 10M texts, from the largest chunked run and the throughput runs.
    largest = max((r for r in memory if r["output"] == "chunks"), key=lambda r: r["n"])
    per_doc = largest["output_bytes"] / largest["n"]
    per_cache = largest["cache_bytes"] / largest["n"]
    report["projection_10m"] = {
        "texts": TARGET_N,
        "memory_teacher_hours_one_process": round(TARGET_N / largest["docs_per_s"] / 3600, 2),
        "throughput_teacher_hours": {
            r["backend"]: round(TARGET_N / r["docs_per_s"] / 3600, 2) for r in runs
        },
        "peak_rss_mib": largest["max_rss_mib"],
        "target_gb": round(per_doc * TARGET_N / 1e9, 2),
        "cache_gb": round(per_cache * TARGET_N / 1e9, 2),
    }
    report["finished"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    results.parent.mkdir(parents=True, exist_ok=True)
    results.with_suffix(".json").write_text(json.dumps(report, indent=1) + "\n", encoding="utf8")
    results.with_suffix(".md").write_text(render(report), encoding="utf8")
    plot(report, results.with_suffix(".png"))
    print(render(report))


def render(report: Dict) -> str:
    p = report["projection_10m"]
    lines = [
        "# Scale: memory and throughput of `annotate`",
        "",
        f"Command: `{report['command']}`  ",
        f"Date: {report['date']} (finished {report['finished']})  ",
        f"Machine: {report['machine']['platform']}, {report['machine']['cpus']} CPUs shared with other jobs "
        f"(load average at start {', '.join(f'{x:.1f}' for x in report['machine']['load_avg_at_start'])}), no GPU, "
        f"Python {report['machine']['python']}",
        "",
        f"## Peak RSS against corpus size (teacher: spaCy textcat, {report['memory_teacher']})",
        "",
        f"Directory output in chunks of {report['chunk_size']} docs, teacher cache on (fresh SQLite file per run).",
        "",
        "| texts | output | peak RSS (MiB) | wall (s) | docs/s | output (MB) | cache (MB) |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    for r in report["memory"]:
        lines.append(
            f"| {r['n']:,} | {r['output']} | {r['max_rss_mib']:.0f} | {r['wall_s']:.0f} | {r['docs_per_s']:.0f} | "
            f"{r['output_bytes'] / 1e6:.1f} | {r['cache_bytes'] / 1e6:.1f} |"
        )
    lines += [
        "",
        f"## Backends (teacher: spaCy textcat, {report['throughput_teacher']}; "
        f"{report['throughput'][0]['n']:,} texts, `--no-cache`)",
        "",
        "Wall time of the whole command, Ray start-up and actor start-up included; measured "
        "one after another in one run.",
        "",
        "| backend | wall (s) | docs/s | speed vs plain | peak RSS, largest process (MiB) |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in report["throughput"]:
        lines.append(
            f"| {r['backend']} | {r['wall_s']:.1f} | {r['docs_per_s']:.0f} | "
            f"{r['speed_vs_plain']:.2f}x | {r['max_rss_mib']:.0f} |"
        )
    chunked = sorted((r for r in report["memory"] if r["output"] == "chunks"), key=lambda r: r["n"])
    a, b = chunked[-2], chunked[-1]
    per_doc = (b["max_rss_mib"] - a["max_rss_mib"]) * 2**20 / (b["n"] - a["n"])
    bound = b["max_rss_mib"] + per_doc * (p["texts"] - b["n"]) / 2**20
    lines += [
        "",
        f"## Projection for {p['texts']:,} texts",
        "",
        f"- Memory: about {p['peak_rss_mib']:.0f} MiB at {b['n']:,} texts. The peak grew by "
        f"{b['max_rss_mib'] - a['max_rss_mib']:.0f} MiB from {a['n']:,} to {b['n']:,} texts ({per_doc:.0f} bytes "
        f"per text); if that residue kept growing linearly, {p['texts']:,} texts would peak at about "
        f"{bound:.0f} MiB (a linear extrapolation). The single `.spacy` file grows with every doc instead.",
        f"- Disk: about {p['target_gb']} GB of target chunks and {p['cache_gb']} GB of teacher cache.",
        f"- Time on one such process with the {report['memory_teacher']} teacher: "
        f"{p['memory_teacher_hours_one_process']} h.",
        "- Time with the "
        + report["throughput_teacher"]
        + " teacher: "
        + ", ".join(f"{name} {hours} h" for name, hours in p["throughput_teacher_hours"].items())
        + ". Shards (`--shard K/N`) on N machines divide the time by N; Ray actors on a "
        "cluster add throughput per actor "
        "until the driver's writing (the plain backend's rate with a cached teacher) is the limit.",
        "",
    ]
    return "\n".join(lines)


def plot(report: Dict, path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    rows = [r for r in report["memory"] if r["output"] == "chunks"]
    single = [r for r in report["memory"] if r["output"] != "chunks"]
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.plot(
        [r["n"] for r in rows], [r["max_rss_mib"] for r in rows], "o-", label="directory of chunks"
    )
    if single:
        ax.plot(
            [r["n"] for r in single],
            [r["max_rss_mib"] for r in single],
            "s",
            color="C3",
            label="one .spacy file",
        )
    ax.set_xscale("log")
    ax.set_ylim(bottom=0)
    ax.set_xlabel("texts annotated")
    ax.set_ylabel("peak RSS (MiB)")
    ax.set_title("annotate: peak memory against corpus size")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    typer.run(main)
