"""Dedupe benchmark: how many injected near-duplicates does `select`'s dedupe find, how often does
it merge texts that differ, and how fast is it?

Per dataset (train.jsonl of ../shared/data/sms_spam, tweeteval_sentiment and ag_news), the pool is the
original texts plus variants of them, so that 30% of the pool are variants: each variant is
made from an original drawn at random (with replacement, so an original may get siblings) by
one of the plugin's own augmenters, resolved through its registry (character noise, case noise,
word dropout/swaps, repeated letters, keyboard typos), or is an exact copy. The pool is shuffled
with a fixed seed and streamed through `NearDuplicateIndex.add_many` (what `select` runs),
at thresholds 0.7, 0.8 and 0.9 (5-character shingles), at 0.8 with 4- and 3-character
shingles, and once with exact duplicates only.

Measured:
- recall: of the group members that come after their group's first member in pool order (a group
  is an original and its variants; the first member is necessarily new), the share flagged as a
  duplicate of a member of the same group; by noise kind, next to the share whose true shingle
  Jaccard with the original reaches the threshold (what MinHash could hope to find);
- false positives on originals: an original flagged as a duplicate of another group, split into
  those that already were duplicates in the source data (same normalised text, or true
  Jaccard >= threshold) and the rest;
- teacher calls saved (pool texts flagged), texts/s, peak resident memory (psutil).

With --retention, also what dedupe does to a trained student (sms_spam and
tweeteval_sentiment, the same pools): the teacher is the MiniLM-L6 linear probe of
configs/peers_minilm_probe.cfg (head fitted on gold train; `annotate` with the SQLite teacher
cache of benchmarks/.work/select, where select_curves.py left sms_spam's scores), and a bow
student (600 steps, dev = the teacher-annotated dev set, 3 seeds) trains on
(a) the whole pool, every text labelled by the teacher;
(b) the texts `select_pool(..., budget=pool size, strategy="random")` keeps (dedupe at its
    defaults), the only ones the teacher labels;
(c) those plus the dropped duplicates with their representative's scores (`inherit_targets`).
Each is scored on test (vs gold; dev and test cut to every k-th text above MAX_EVAL):
macro-F1, retention = student / teacher macro-F1, agreement with the teacher's argmax.
Work files (resumable: a run whose result.json exists is not redone) under
benchmarks/.work/select_dedupe/<dataset>/.

    OMP_NUM_THREADS=1 python benchmarks/select_dedupe.py --retention

Writes results/select_dedupe.{json,md}.
"""

import json
import os
import platform
import random
import shutil
import statistics
import sys
import time
from collections import Counter, defaultdict
from contextlib import contextmanager
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple

import numpy
import psutil
import typer

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DATA = ROOT.parent / "shared" / "data"
T0 = time.time()
VARIANT_SHARE = 0.3
# (name, threshold, near-duplicates, shingle): the thresholds at 5-grams, then shorter shingles
# (one edit touches fewer of them) at the default threshold. 3-grams became the default
# (select.dedupe.DEFAULT_SHINGLE) after the first run of this benchmark.
MODES = [
    ("exact only", 1.0, False, 5),
    ("near t=0.7", 0.7, True, 5),
    ("near t=0.8", 0.8, True, 5),
    ("near t=0.9", 0.9, True, 5),
    ("near t=0.8 k=4", 0.8, True, 4),
    ("near t=0.8 k=3", 0.8, True, 3),
]
# (kind, registered augmenter, its settings); "exact" is a plain copy.
NOISE = [
    ("char", "spacy-distill.CharNoise.v1", {"rate": 0.05}),
    ("case", "spacy-distill.CaseNoise.v1", {"rate": 0.3}),
    ("word", "spacy-distill.WordNoise.v1", {"dropout": 0.1, "swap": 0.1}),
    ("repeat", "spacy-distill.RepeatedLetters.v1", {"rate": 0.05}),
    ("typos", "spacy-distill.KeyboardTypos.v1", {"rate": 0.03}),
]
EXACT_SHARE = 0.1  # of the variants


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')} +{time.time() - T0:6.0f}s] {message}", flush=True)


def shingles(text: str, k: int = 5) -> frozenset:
    from spacy_distill.data.leakage import normalize_text

    t = normalize_text(text)
    return frozenset(t[i : i + k] for i in range(max(1, len(t) - k + 1)))


def jaccard(a: frozenset, b: frozenset) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


def make_pool(texts: List[str], seed: int) -> List[Tuple[str, str, int, str]]:
    """(key, text, group, kind) per pool text; kind "original" for the source texts."""
    from spacy_distill.augment.base import derive_rng
    from spacy_distill.registry import registry

    augmenters = {
        kind: registry.spacy_distill_text_augmenters.get(name)(n=1, **params)
        for kind, name, params in NOISE
    }
    rng = random.Random(seed)
    n_variants = round(VARIANT_SHARE * len(texts) / (1 - VARIANT_SHARE))
    pool = [(f"orig:{i}", text, i, "original") for i, text in enumerate(texts)]
    for j in range(n_variants):
        group = rng.randrange(len(texts))
        kind = "exact" if rng.random() < EXACT_SHARE else NOISE[j % len(NOISE)][0]
        text = texts[group]
        if kind != "exact":
            made = augmenters[kind].augment(text, derive_rng(seed, kind, j), 1)
            # A text the noise cannot change (no letters for case noise) becomes a copy.
            text, kind = (made[0], kind) if made else (text, "exact")
        pool.append((f"var:{j}", text, group, kind))
    rng.shuffle(pool)
    return pool


def run_index(
    pool: List[Tuple[str, str, int, str]], threshold: float, near: bool, k: int, label: str
) -> Tuple[list, float, int, int]:
    from spacy_distill.select.dedupe import NearDuplicateIndex

    process = psutil.Process()
    baseline = peak = process.memory_info().rss
    answers: list = []
    start = time.perf_counter()
    with NearDuplicateIndex(threshold=threshold, near=near, shingle=k) as index:
        for at in range(0, len(pool), 5000):
            chunk = pool[at : at + 5000]
            answers += index.add_many((key, text) for key, text, _, _ in chunk)
            peak = max(peak, process.memory_info().rss)
            log(f"  {label}: {len(answers)}/{len(pool)} texts")
    seconds = time.perf_counter() - start
    return answers, seconds, baseline, peak


def score(
    pool: List[Tuple[str, str, int, str]],
    answers: list,
    threshold: float,
    texts: List[str],
    k: int,
) -> Dict:
    from spacy_distill.data.leakage import normalize_text

    shingle_sets = {i: shingles(t, k) for i, t in enumerate(texts)}
    group_of = {key: group for key, _, group, _ in pool}
    first_member: Dict[int, str] = {}  # the group's first text in pool order
    expected = Counter()
    found = Counter()
    reachable = Counter()
    wrong_group = Counter()
    false_pos = {"source_exact": 0, "source_near": 0, "other": 0}
    fp_examples = []
    n_originals = 0
    for (key, text, group, kind), dup in zip(pool, answers):
        first = group not in first_member
        first_member.setdefault(group, text)
        if kind == "original":
            n_originals += 1
        if dup is not None and group_of[dup.of] != group:
            wrong_group[kind] += 1
            if kind == "original":
                other = texts[group_of[dup.of]]
                if normalize_text(other) == normalize_text(text):
                    false_pos["source_exact"] += 1
                elif jaccard(shingle_sets[group], shingles(other, k)) >= threshold:
                    false_pos["source_near"] += 1
                else:
                    false_pos["other"] += 1
                    if len(fp_examples) < 3:
                        fp_examples.append(
                            {"text": text, "of": other, "similarity": dup.similarity}
                        )
        if first:
            continue
        expected[kind] += 1
        # An original that comes after a variant of itself is measured against that variant.
        like = shingles(first_member[group], k) if kind == "original" else shingle_sets[group]
        if jaccard(shingles(text, k), like) >= threshold:
            reachable[kind] += 1
        if dup is not None and group_of[dup.of] == group:
            found[kind] += 1
    kinds = sorted(expected)
    total_expected = sum(expected.values())
    return {
        "recall": sum(found.values()) / total_expected,
        "by_kind": {
            kind: {
                "expected": expected[kind],
                "recall": found[kind] / expected[kind],
                "true_jaccard_at_least_threshold": reachable[kind] / expected[kind],
            }
            for kind in kinds
        },
        "wrong_group": dict(wrong_group),
        "false_positive_originals": false_pos,
        "false_positive_rate": false_pos["other"] / n_originals,
        "false_positive_examples": fp_examples,
        "n_flagged": sum(d is not None for d in answers),
        "teacher_calls_saved": sum(d is not None for d in answers) / len(pool),
    }


# ---- retention: a student trained with and without dedupe ------------------------------------

RETENTION_DATASETS = ("sms_spam", "tweeteval_sentiment")
TRAINING_SEEDS = (0, 1, 2)
MAX_STEPS = 600
MAX_EVAL = 1600  # dev/test texts; a larger split is cut to every k-th text (teacher time)
ARMS = ("no dedupe", "dedupe", "dedupe + inherit")
WORK = HERE / ".work" / "select_dedupe"
SELECT_WORK = HERE / ".work" / "select"  # select_curves.py's probe heads and teacher cache


@contextmanager
def features_once(progress_every: int = 2000) -> Iterator[None]:
    """Encode each text once while the teacher works in this process, logging progress.

    The probe head is fitted on the features of the gold train texts and the pool holds those
    texts again: remembering the features by text (they depend on the model, not on the head)
    spares the model a second pass. `annotate` still counts a teacher call per text it lacks.
    """
    from spacy_distill.hf.extractor import HiddenStateExtractor

    original = HiddenStateExtractor.features
    memo: Dict[str, numpy.ndarray] = {}

    def features(self, texts):
        texts = list(texts)
        new = [text for text in dict.fromkeys(texts) if text not in memo]
        if new:
            before = len(memo) // progress_every
            memo.update(zip(new, original(self, new)))
            if len(memo) // progress_every > before:
                log(f"  teacher: {len(memo)} texts encoded")
        return numpy.stack([memo[t] for t in texts]) if texts else original(self, texts)

    HiddenStateExtractor.features = features
    try:
        yield
    finally:
        HiddenStateExtractor.features = original


def eval_file(dataset: str, split: str, wd: Path) -> Path:
    """The dev or test records; over MAX_EVAL, every k-th of them (the same for every arm)."""
    source = DATA / dataset / f"{split}.jsonl"
    rows = [row for row in source.read_text(encoding="utf8").splitlines() if row.strip()]
    if len(rows) <= MAX_EVAL:
        return source
    out = wd / f"{split}.jsonl"
    out.write_text("\n".join(rows[:: -(-len(rows) // MAX_EVAL)]) + "\n", encoding="utf8")
    return out


def probe_teacher(dataset: str, wd: Path):
    """The MiniLM probe teacher of a dataset, built when it first has a text to score; the head
    of select_curves.py's work folder when there is one (its scores are in the cache)."""
    from select_curves import TEACHER_CFG, minilm_dir

    from spacy_distill import lazy_teacher
    from spacy_distill.teachers.probe_head import HEAD_META

    head = SELECT_WORK / dataset / "probe_head"
    if not (head / HEAD_META).exists():
        head = wd / "probe_head"
    overrides = {
        "paths.minilm": minilm_dir(),
        "paths.train": str(DATA / dataset / "train.jsonl"),
        "paths.head": str(head),
    }
    return lazy_teacher(TEACHER_CFG, overrides)


def annotate_split(source: Path, out: Path, teacher, cache: Path, done: Dict) -> Dict:
    """`annotate` source into out unless done holds it; RETURNS what the run counted."""
    from spacy_distill import annotate

    if out.name not in done or not out.exists():
        summary = annotate(source, out, teacher, cache=cache, show_progress=False)
        done[out.name] = {
            "n": summary.n_written,
            "teacher_scored": summary.n_teacher,
            "cache_hits": summary.n_cache_hits,
            "seconds": round(summary.seconds, 1),
        }
    return done[out.name]


def train_and_test(config: Path, train: Path, dev: Path, rd: Path, seed: int, test: Dict) -> Dict:
    """Train the bow student on train (a target file or folder) into rd; score it on test."""
    import spacy
    from select_curves import scores

    from spacy_distill.training.train import train_pipeline

    result_file = rd / "result.json"
    if result_file.exists():
        return json.loads(result_file.read_text(encoding="utf8"))
    start = time.time()
    overrides = {
        "paths.train": str(train),
        "paths.dev": str(dev),
        "system.seed": seed,
        "training.logger.progress_bar": False,
    }
    best = train_pipeline(config, rd / "training", overrides)
    train_s = time.time() - start
    nlp = spacy.load(best)
    pred = [max(d.cats, key=d.cats.get) for d in nlp.pipe(test["texts"], batch_size=1000)]
    result = scores(test["gold"], pred, test["labels"])
    result["agreement"] = sum(p == t for p, t in zip(pred, test["teacher"])) / len(pred)
    result["train_s"] = round(train_s, 1)
    shutil.rmtree(rd / "training")
    result_file.write_text(json.dumps(result, indent=1), encoding="utf8")
    return result


def mean_std(values: List[float]) -> List[float]:
    return [statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0]


def measure_retention(dataset: str, seed: int, cache: Path) -> Dict:
    """The three arms on one dataset's pool (see the module docstring)."""
    from select_curves import load_split, scores

    from spacy_distill import inherit_targets, make_student_config, select_pool
    from spacy_distill.select.run import duplicates_path

    wd = WORK / dataset
    wd.mkdir(parents=True, exist_ok=True)
    path = DATA / dataset / "train.jsonl"
    texts = [json.loads(line)["text"] for line in path.open(encoding="utf8") if line.strip()]
    pool = make_pool(texts, seed)
    pool_file = wd / "pool.jsonl"
    pool_file.write_text(
        "".join(json.dumps({"id": key, "text": text}) + "\n" for key, text, _, _ in pool),
        encoding="utf8",
    )
    n_pool = len(pool)

    # (a) the teacher labels the whole pool; dev and test are annotated for every arm.
    teacher = probe_teacher(dataset, wd)
    runs_file = wd / "annotate.json"
    done = json.loads(runs_file.read_text(encoding="utf8")) if runs_file.exists() else {}
    dev = wd / "dev.spacy"
    for source, out in (
        (pool_file, wd / "pool.spacy"),
        (eval_file(dataset, "dev", wd), dev),
        (eval_file(dataset, "test", wd), wd / "test.spacy"),
    ):
        log(f"{dataset}: teacher on {source.name}")
        info = annotate_split(source, out, teacher, cache, done)
        runs_file.write_text(json.dumps(done, indent=1), encoding="utf8")
        log(f"{dataset}: {out.name}: {info['teacher_scored']} scored, {info['cache_hits']} cached")
    test = load_split(wd / "test.spacy")
    teacher_scores = scores(test["gold"], test["teacher"], test["labels"])
    log(f"{dataset}: teacher test macro-F1 {teacher_scores['macro_f1']:.4f}")

    # (b) select keeps the unique texts; their targets come from the cache (the teacher scored
    # them in (a)), as a run that labelled only them would have had them.
    kept = wd / "kept.jsonl"
    selection = select_pool(pool_file, kept, n_pool, strategy="random", seed=seed)
    train_dirs = {arm: wd / f"train-{i}" for i, arm in enumerate(ARMS[1:], start=1)}
    for folder in train_dirs.values():
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir()
    annotate_split(kept, train_dirs["dedupe"] / "kept.spacy", teacher, cache, {})
    # (c) the duplicates take their representative's scores.
    shutil.copy(train_dirs["dedupe"] / "kept.spacy", train_dirs["dedupe + inherit"])
    inherited = inherit_targets(
        [train_dirs["dedupe"] / "kept.spacy"],
        duplicates_path(kept),
        train_dirs["dedupe + inherit"] / "inherited.spacy",
    )
    train_dirs["no dedupe"] = wd / "pool.spacy"
    log(
        f"{dataset}: select kept {selection.n_selected}/{n_pool} ({selection.n_duplicates} "
        f"duplicates, {selection.n_exact_duplicates} exact); {inherited.n_written} inherited, "
        f"{inherited.n_missing} without a representative"
    )

    config = wd / f"bow-{MAX_STEPS}.cfg"
    make_student_config(wd / "pool.spacy", dev, arch="bow", max_steps=MAX_STEPS).to_disk(config)
    calls = {"no dedupe": n_pool, "dedupe": selection.n_selected}
    calls["dedupe + inherit"] = calls["dedupe"]
    n_train = {
        "no dedupe": n_pool,
        "dedupe": selection.n_selected,
        "dedupe + inherit": selection.n_selected + inherited.n_written,
    }
    arms: Dict[str, Dict] = {}
    for arm in ARMS:
        runs = []
        for training_seed in TRAINING_SEEDS:
            rd = wd / "runs" / f"{ARMS.index(arm)}-s{training_seed}"
            r = train_and_test(config, train_dirs[arm], dev, rd, training_seed, test)
            r["retention"] = r["macro_f1"] / teacher_scores["macro_f1"]
            runs.append(r)
            log(
                f"{dataset} {arm} seed {training_seed}: macro-F1 {r['macro_f1']:.4f}, retention "
                f"{r['retention']:.3f}, agreement {r['agreement']:.3f} ({r['train_s']:.0f}s)"
            )
        arms[arm] = {
            "teacher_calls": calls[arm],
            "calls_saved": 1 - calls[arm] / n_pool,
            "n_train": n_train[arm],
            "runs": runs,
            **{k: mean_std([r[k] for r in runs]) for k in ("macro_f1", "retention", "agreement")},
        }
    return {
        "n_pool": n_pool,
        # What (a) costs with annotate's cache: a text the teacher has scored is not scored again.
        "n_distinct": len({text for _, text, _, _ in pool}),
        "n_dev": done[dev.name]["n"],
        "n_test": len(test["gold"]),
        "n_kept": selection.n_selected,
        "n_duplicates": selection.n_duplicates,
        "n_exact_duplicates": selection.n_exact_duplicates,
        "n_inherited": inherited.n_written,
        "n_inherit_missing": inherited.n_missing,
        "teacher": teacher_scores,
        "annotate": done,
        "arms": arms,
    }


def main(
    seed: int = typer.Option(0, help="Seed of the variants, the shuffle and the selection."),
    retention: bool = typer.Option(
        False, "--retention", help="Also train students with and without dedupe (~10 min)."
    ),
    cache: Path = typer.Option(
        SELECT_WORK / "teacher_cache.sqlite", help="Teacher cache (shared with select_curves)."
    ),
) -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ["HF_HUB_OFFLINE"] = "1"
    import spacy_distill  # noqa: F401  (registers the augmenters)

    results = {
        "command": "OMP_NUM_THREADS=1 python benchmarks/select_dedupe.py"
        + (f" --seed {seed}" if seed else "")
        + (" --retention" if retention else ""),
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": platform.platform(),
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
        "load_average": [round(x, 1) for x in os.getloadavg()],
        "noise": {kind: {"augmenter": name, **params} for kind, name, params in NOISE},
        "exact_share_of_variants": EXACT_SHARE,
        "datasets": {},
    }
    # ag_news: longer texts (news leads), where short shingles could merge unrelated texts.
    for name in ("sms_spam", "tweeteval_sentiment", "ag_news"):
        path = DATA / name / "train.jsonl"
        texts = [json.loads(line)["text"] for line in path.open(encoding="utf8") if line.strip()]
        pool = make_pool(texts, seed)
        kinds = Counter(kind for _, _, _, kind in pool)
        log(f"{name}: {len(texts)} originals + {len(pool) - len(texts)} variants {dict(kinds)}")
        row: Dict = {"n_originals": len(texts), "n_pool": len(pool), "kinds": dict(kinds)}
        for mode, threshold, near, k in MODES:
            label = f"{name} {mode}"
            answers, seconds, baseline, peak = run_index(pool, threshold, near, k, label)
            r = row[mode] = {
                **score(pool, answers, threshold, texts, k),
                "texts_per_s": len(pool) / seconds,
                "rss_before_mb": baseline / 1e6,
                "rss_growth_mb": (peak - baseline) / 1e6,
            }
            log(
                f"{label}: recall {r['recall']:.3f}, false positives {r['false_positive_originals']}, "
                f"saved {r['teacher_calls_saved']:.3f}, {r['texts_per_s']:.0f} texts/s"
            )
        results["datasets"][name] = row
    if retention:
        import torch

        torch.set_num_threads(1)
        results["retention"] = {
            "max_steps": MAX_STEPS,
            "seeds": list(TRAINING_SEEDS),
            "max_eval": MAX_EVAL,
            "datasets": {},
        }
        with features_once():
            for name in RETENTION_DATASETS:
                results["retention"]["datasets"][name] = measure_retention(name, seed, cache)
    out = HERE / "results"
    (out / "select_dedupe.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf8")
    (out / "select_dedupe.md").write_text(markdown(results), encoding="utf8")
    log(f"wrote {out / 'select_dedupe.md'}")


def markdown(results: Dict) -> str:
    lines = [
        "# Dedupe for `select`: injected near-duplicates found, false merges, speed"
        + (", student retention" if "retention" in results else ""),
        "",
        f"Command: `{results['command']}` ({results['date']}, {results['cpus']} shared CPUs, "
        f"{results['machine']}, Python {results['python']}). Script: `benchmarks/select_dedupe.py`.",
        "",
        "Pool: each dataset's train texts plus variants making up 30% of the pool (each from a "
        "random original; an original can get several), shuffled. Variants: "
        + ", ".join(
            f"{kind} (`{v['augmenter']}` "
            + ", ".join(f"{k}={p}" for k, p in v.items() if k != "augmenter")
            + ")"
            for kind, v in results["noise"].items()
        )
        + f", and exact copies ({results['exact_share_of_variants']:.0%} of the variants). "
        "MinHash: 128 permutations, character k-grams (k=5 unless the mode says) of the "
        "normalised text, bands chosen per threshold (`lsh_bands`). RSS growth: resident memory "
        "added while the pool streamed through the index (batches, SQLite's page cache of at "
        f"most 16 MiB). Load average at the start: {results['load_average']}.",
        "",
        "Recall: share of group members after the group's first (in pool order) that were flagged "
        "as a duplicate of their own group. FP originals: originals flagged as a duplicate of "
        "another group, split into already duplicates in the source data (exact after case/space "
        "folding / true Jaccard >= threshold) and the rest; FP rate = the rest / originals. "
        "Saved: share of the pool the teacher need not label.",
        "",
        "| dataset | mode | pool | recall | FP originals (src exact / src near / other) "
        "| FP rate | saved | texts/s | RSS growth MB |",
        "|---|---|---:|---:|---|---:|---:|---:|---:|",
    ]
    for name, row in results["datasets"].items():
        for mode, _, _, _ in MODES:
            r = row[mode]
            fp = r["false_positive_originals"]
            lines.append(
                f"| {name} | {mode.replace('_', ' ')} | {row['n_pool']} | {r['recall']:.3f} | "
                f"{fp['source_exact']} / {fp['source_near']} / {fp['other']} | "
                f"{r['false_positive_rate']:.4f} | {r['teacher_calls_saved']:.3f} | "
                f"{r['texts_per_s']:.0f} | {r['rss_growth_mb']:.1f} |"
            )
    lines += [
        "",
        "Recall by kind of noise (in brackets: share of those texts whose true shingle Jaccard "
        "with their original, for an original with its group's first text, reaches the "
        "threshold: about the most MinHash can find):",
        "",
    ]
    kinds = ["exact", "original"] + [kind for kind in results["noise"]]
    lines.append("| dataset | mode | " + " | ".join(kinds) + " |")
    lines.append("|---|---|" + "---:|" * len(kinds))
    for name, row in results["datasets"].items():
        for mode, _, _, _ in MODES:
            by_kind = row[mode]["by_kind"]
            cells = []
            for kind in kinds:
                k: Optional[Dict] = by_kind.get(kind)
                cells.append(
                    "-"
                    if k is None
                    else f"{k['recall']:.3f} ({k['true_jaccard_at_least_threshold']:.2f})"
                )
            lines.append(f"| {name} | {mode} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Reading: recall by kind follows the bracketed share, i.e. the misses are variants whose "
        "noise moved their true shingle similarity below the threshold, not pairs LSH failed to "
        "offer (a 5%-per-character noise rewrites up to k shingles per edit). Shorter shingles "
        "keep more of them above the threshold; false merges of originals stay few in every "
        "mode, and most of them are texts the source data already holds twice (spam templates "
        "differing in a phone number or code).",
    ]
    examples = defaultdict(list)
    for name, row in results["datasets"].items():
        for mode, _, near, _ in MODES:
            for ex in row[mode]["false_positive_examples"]:
                examples[name].append((mode, ex))
    if examples:
        lines += ["", "Examples of false merges (neither exact nor >= threshold in truth):", ""]
        for name, items in examples.items():
            for mode, ex in items[:3]:
                lines.append(
                    f"- {name}, {mode} (estimated {ex['similarity']:.3f}): "
                    f"{json.dumps(ex['text'][:120], ensure_ascii=False)} ~ "
                    f"{json.dumps(ex['of'][:120], ensure_ascii=False)}"
                )
    if "retention" in results:
        lines += retention_markdown(results["retention"])
    return "\n".join(lines) + "\n"


def paired_delta(arm: Dict, base: Dict) -> List[float]:
    """Mean ± std over the training seeds of arm's retention minus base's (same seed)."""
    return mean_std([a["retention"] - b["retention"] for a, b in zip(arm["runs"], base["runs"])])


def retention_markdown(retention: Dict) -> List[str]:
    lines = [
        "",
        "## Student retention with and without dedupe",
        "",
        "Teacher: the MiniLM-L6 linear probe of `configs/peers_minilm_probe.cfg` (head fitted on "
        "gold train), through `annotate` and its teacher cache. Pool: the train texts plus the "
        "30% variants above (same seed), without labels. Student: bow, "
        f"`max_steps={retention['max_steps']}`, dev = the teacher-annotated dev set, training "
        f"seeds {', '.join(map(str, retention['seeds']))} (mean ± std). Arms: (a) no dedupe, "
        "the teacher labels every pool text; (b) dedupe, `select_pool(pool, budget=pool size, "
        'strategy="random")` at its defaults (near-duplicates, threshold 0.8, 3-character '
        "shingles) keeps the texts the teacher labels and the student trains on; (c) dedupe + "
        "inherit, (b) plus each dropped duplicate with its representative's teacher scores "
        "(`inherit_targets`), no teacher call. Test: macro-F1 vs gold; retention = student / "
        "teacher test macro-F1; Δ = the arm's retention minus (a)'s at the same seed; agreement "
        "= share of test texts where the student's argmax is the teacher's. Dev and test over "
        f"{retention['max_eval']} texts are cut to every k-th text.",
        "",
        "| dataset | arm | teacher calls | saved | train docs | test macro-F1 | retention "
        "| Δ retention vs (a) | agreement |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]

    def pm(values: List[float], digits: int = 3, sign: str = "") -> str:
        return f"{values[0]:{sign}.{digits}f} ± {values[1]:.{digits}f}"

    notes = []
    for name, row in retention["datasets"].items():
        base = row["arms"]["no dedupe"]
        for arm, r in row["arms"].items():
            delta = "-" if arm == "no dedupe" else pm(paired_delta(r, base), sign="+")
            lines.append(
                f"| {name} | {arm} | {r['teacher_calls']} | {r['calls_saved']:.1%} | "
                f"{r['n_train']} | {pm(r['macro_f1'], 4)} | {pm(r['retention'])} | {delta} | "
                f"{pm(r['agreement'])} |"
            )
        t = row["teacher"]
        notes.append(
            f"- {name}: teacher test macro-F1 {t['macro_f1']:.4f} (accuracy {t['accuracy']:.4f}); "
            f"pool {row['n_pool']} ({row['n_distinct']} distinct texts: what (a) costs with "
            f"the teacher cache; against it (b) saves {1 - row['n_kept'] / row['n_distinct']:.1%}), dev "
            f"{row['n_dev']}, test {row['n_test']}; select kept "
            f"{row['n_kept']} and dropped {row['n_duplicates']} ({row['n_exact_duplicates']} "
            f"exact), of which {row['n_inherited']} inherited scores "
            f"({row['n_inherit_missing']} without an annotated representative)."
        )
    lines += ["", *notes, "", "Reading: " + retention_reading(retention)]
    return lines


def retention_reading(retention: Dict) -> str:
    """One sentence per dataset and dedupe arm: the change in retention and whether it is more
    than the spread over seeds (2 std of the paired differences, at least 0.005)."""
    parts = []
    for name, row in retention["datasets"].items():
        base = row["arms"]["no dedupe"]
        for arm in ARMS[1:]:
            r = row["arms"][arm]
            mean, std = paired_delta(r, base)
            if abs(mean) <= max(2 * std, 0.005):
                verdict = "unchanged within the seed spread"
            else:
                verdict = "lower" if mean < 0 else "higher"
            parts.append(
                f"{name}, {arm} ({r['calls_saved']:.1%} fewer teacher calls): retention "
                f"{verdict} ({mean:+.3f} ± {std:.3f})"
            )
    return "; ".join(parts) + "."


if __name__ == "__main__":
    typer.run(main)
