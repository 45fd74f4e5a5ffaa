"""The distillation card an exported student carries in `meta.json` (`spacy_distill.card`): what
it was distilled from (teacher, loss, data) and, given `evaluate`'s report, what it kept."""

from pathlib import Path
from typing import Any, Dict, Optional

from spacy.language import Language

from ..data.targets import read_target_summary


def distillation_card(
    nlp: Language,
    textcat: str,
    *,
    train_data: Optional[Path] = None,
    dev_data: Optional[Path] = None,
    report: Optional[Dict[str, Any]] = None,
) -> Dict[str, Any]:
    """What the student was distilled from, and (given a report) what it kept."""
    block = nlp.config["components"][textcat]
    loss = block.get("loss") or {}
    card: Dict[str, Any] = {
        "student": {
            "component": textcat,
            "trained_as": block.get("factory"),
            "architecture": (block.get("model") or {}).get("@architectures"),
            "labels": list(nlp.get_pipe(textcat).labels),
        },
        "loss": {key: loss.get(key) for key in ("@losses", "temperature", "alpha") if key in loss}
        or None,
        "teacher": None,
        "data": {},
    }
    teachers = set()
    for split, path in (("train", train_data), ("dev", dev_data)):
        if path is None:
            continue
        summary = read_target_summary(path)
        card["data"][split] = {
            "path": str(path),
            "n_docs": summary["n_docs"],
            "n_teacher": summary["n_teacher"],
            "n_gold": summary["n_gold"],
        }
        teachers.update(tuple(t) for t in summary["teachers"])
    if teachers:
        card["teacher"] = [{"id": t[0], "fingerprint": t[1]} for t in sorted(teachers, key=str)]
    if report is not None:
        card["evaluation"] = evaluation_summary(report)
    return card


def evaluation_summary(report: Dict[str, Any]) -> Dict[str, Any]:
    """The card's `evaluation`: data, quality, retention, agreement and cost of the report."""
    quality = report.get("quality") or {}
    summary: Dict[str, Any] = {
        "data": (report.get("data") or {}).get("path"),
        "n_texts": (report.get("data") or {}).get("n_texts"),
        "teacher": (report.get("teacher") or {}).get("id"),
    }
    for model in ("student", "teacher"):
        if model in quality:
            summary[model] = {k: quality[model].get(k) for k in ("accuracy", "macro_f1")}
    if report.get("retention"):
        summary["retention"] = report["retention"]
    if report.get("agreement"):
        summary["agreement"] = report["agreement"].get("argmax")
    cost = (report.get("cost") or {}).get("summary")
    if cost:
        summary["speedup"] = cost.get("speedup")
        summary["memory_ratio"] = cost.get("memory_ratio")
        summary["size_ratio"] = cost.get("size_ratio")
    return summary


def card_description(card: Dict[str, Any]) -> str:
    """The `description` of meta.json: the teacher and, given an evaluation, what was kept."""
    teachers = ", ".join(t["id"] for t in card.get("teacher") or []) or "a teacher"
    text = f"Text classifier distilled from {teachers} with spacy-distill."
    ev = card.get("evaluation") or {}
    if ev.get("retention"):
        text += f" Keeps {ev['retention'].get('accuracy', 0):.1%} of the teacher's accuracy"
        if ev.get("speedup"):
            text += f" at {ev['speedup']:.0f}x its speed"
        text += f" (on {ev.get('n_texts')} texts of {ev.get('data')})."
    return text
