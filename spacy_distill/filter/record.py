"""The verdict record a `semantic_filter` stores on each doc, and the `doc._.verdict` and
`doc._.verdict_details` extensions that read it.

Each doc holds one record, a flat tuple, under `RECORD_KEY` in `doc.user_data`; the two
attributes are getters over it. A dict per doc (with a nested dict of probabilities) cost as much
as the classifier itself and fed the garbage collector; a tuple of strings and floats is cheap
to make, not tracked by the collector, and survives `DocBin(store_user_data=True)` and copies.
"""

from typing import Any, Dict, List, Optional, Sequence

from spacy.tokens import Doc

VERDICT_ATTR = "verdict"
DETAILS_ATTR = "verdict_details"
# verdict_details["reason"]: why a doc's scores decided nothing.
EMPTY = "empty"
INVALID_SCORES = "invalid_scores"

RECORD_KEY = ("spacy_distill", "verdict")
(
    _VERDICT,
    _LABELS,
    _DECIDED_BY,
    _IN_BAND,
    _ESCALATED,
    _MARGIN,
    _NAMES,
    _STUDENT,
    _TEACHER,
    _REASON,
    _TEACHER_ERROR,
) = range(11)


def store_records(
    docs: List[Doc],
    names: Sequence[str],
    decision: Sequence[Sequence[Any]],
    scores: Sequence[Sequence[Any]],
) -> None:
    """Store each doc's record.

    names (Sequence[str]): the labels, in the order of the probabilities.
    decision: per field, one value per doc: verdict, labels, decided_by, in_band, escalated,
        margin (the record's fields before the label names).
    scores: per field, one value per doc: student probabilities, teacher probabilities,
        reason, teacher_error (the fields after them).
    """
    for doc, head, tail in zip(docs, zip(*decision), zip(*scores)):
        doc.user_data[RECORD_KEY] = (*head, names, *tail)


def _get_verdict(doc: Doc) -> Optional[str]:
    record = doc.user_data.get(RECORD_KEY)
    return None if record is None else record[_VERDICT]


def _get_verdict_details(doc: Doc) -> Optional[Dict[str, Any]]:
    record = doc.user_data.get(RECORD_KEY)
    if record is None:
        return None
    names = record[_NAMES]
    teacher = record[_TEACHER]
    return {
        "verdict": record[_VERDICT],
        "labels": list(record[_LABELS]),
        "decided_by": record[_DECIDED_BY],
        "in_band": record[_IN_BAND],
        "escalated": record[_ESCALATED],
        "margin": record[_MARGIN],
        "student": dict(zip(names, record[_STUDENT])),
        "teacher": None if teacher is None else dict(zip(names, teacher)),
        # Records written before these fields existed (a DocBin) have 9 fields.
        "reason": record[_REASON] if len(record) > _REASON else None,
        "teacher_error": record[_TEACHER_ERROR] if len(record) > _TEACHER_ERROR else None,
    }


def register_extensions() -> None:
    """Register `doc._.verdict` and `doc._.verdict_details` (idempotent)."""
    Doc.set_extension(VERDICT_ATTR, getter=_get_verdict, force=True)
    Doc.set_extension(DETAILS_ATTR, getter=_get_verdict_details, force=True)


register_extensions()


__all__ = [
    "DETAILS_ATTR",
    "EMPTY",
    "INVALID_SCORES",
    "RECORD_KEY",
    "VERDICT_ATTR",
    "register_extensions",
    "store_records",
]
