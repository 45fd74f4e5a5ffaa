"""The on-disk teacher-target format: the one place that writes and reads it.

A target file is a spaCy `DocBin` (`.spacy`) saved with `store_user_data=True`. Each doc
holds one text. Gold labels, when known, live where spaCy expects them, in `doc.cats`
(0.0/1.0 per label). Everything the teacher said lives in
`doc.user_data["spacy_distill"]`, a dict with these fields (format version 1):

    version       int     the format version (1)
    labels        list    the label names, in the order of `scores`
    exclusive     bool    True: one label per text (softmax); False: multi-label (sigmoids)
    teacher       dict    {"id": str, "fingerprint": str}, or None when no teacher scored the doc
    scores        list    one float per label, or None: exclusive -> log-probabilities
                          (log-softmax); multi-label -> logits (log-odds) of each label
    hidden        dict    teacher hidden states (float16, doc- and/or token-level, with the
                          layer, pooling and projection that made them), or None; see
                          `spacy_distill.hidden.storage` and docs/hidden-states.md
    provenance    dict    {"id", "source", "line", "parent", "method", "params"}; parent,
                          method and params are None for original (non-augmented) texts

See docs/target-format.md for the full description.
"""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import numpy
from spacy.tokens import Doc, DocBin
from spacy.vocab import Vocab

from ..errors import TargetFormatError
from ..probabilities import scores_to_probabilities

FORMAT_VERSION = 1
USER_DATA_KEY = "spacy_distill"
PROVENANCE_FIELDS = ("id", "source", "line", "parent", "method", "params")


@dataclass
class Provenance:
    """Where a text came from: its record id, source file and line, and, for an augmented
    text, its parent's id and the method (with parameters) that made it."""

    id: Optional[str] = None
    source: Optional[str] = None
    line: Optional[int] = None
    parent: Optional[str] = None
    method: Optional[str] = None
    params: Optional[Dict[str, Any]] = None

    def to_dict(self) -> Dict[str, Any]:
        return {name: getattr(self, name) for name in PROVENANCE_FIELDS}

    def describe(self) -> str:
        """A short human-readable location, for error messages."""
        parts = []
        if self.source is not None:
            parts.append(f"{self.source}" + (f":{self.line}" if self.line is not None else ""))
        if self.id is not None:
            parts.append(f"id {self.id!r}")
        return ", ".join(parts)


@dataclass
class TeacherTarget:
    """What the teacher said about one text, plus its labels and provenance."""

    labels: Tuple[str, ...]
    exclusive: bool
    scores: Optional[numpy.ndarray] = None
    teacher_id: Optional[str] = None
    fingerprint: Optional[str] = None
    hidden: Optional[Dict[str, Any]] = None
    provenance: Provenance = field(default_factory=Provenance)
    teacher_info: Dict[str, Any] = field(default_factory=dict)

    @property
    def has_teacher(self) -> bool:
        return self.scores is not None

    def probabilities(self, temperature: float = 1.0) -> numpy.ndarray:
        """The teacher's distribution at a temperature.

        temperature (float): T > 0; T > 1 flattens the distribution.
        RETURNS (numpy.ndarray): softmax(scores / T) if exclusive, else sigmoid(scores / T).
        """
        if self.scores is None:
            raise ValueError("This target holds no teacher scores.")
        return scores_to_probabilities(self.scores, self.exclusive, temperature)

    def to_dict(self) -> Dict[str, Any]:
        teacher = None
        if self.scores is not None:
            teacher = {**self.teacher_info, "id": self.teacher_id, "fingerprint": self.fingerprint}
        return {
            "version": FORMAT_VERSION,
            "labels": list(self.labels),
            "exclusive": bool(self.exclusive),
            "teacher": teacher,
            # Plain floats keep the user data readable by msgpack, JSON and humans alike.
            "scores": None if self.scores is None else [float(s) for s in self.scores],
            "hidden": self.hidden,
            "provenance": self.provenance.to_dict(),
        }

    def stored_hidden(self, where: str = "doc", n_tokens: Optional[int] = None):
        """The decoded hidden states (float32 arrays and their metadata), or None.

        where (str): the location to name in errors.
        n_tokens (Optional[int]): the doc's token count, checked against token-level states.
        RETURNS (Optional[StoredHidden]): see `spacy_distill.hidden.storage.StoredHidden`.
        """
        if self.hidden is None:
            return None
        from ..hidden.storage import decode_hidden

        return decode_hidden(self.hidden, where, n_tokens=n_tokens)

    @classmethod
    def from_dict(
        cls, data: Any, where: str = "doc", n_tokens: Optional[int] = None
    ) -> "TeacherTarget":
        """Validate and read the user-data dict of one doc.

        data (Any): the value stored under doc.user_data["spacy_distill"].
        where (str): the location to name in errors, e.g. "train.spacy: doc 12".
        n_tokens (Optional[int]): the doc's token count, checked against token-level hidden states.
        RETURNS (TeacherTarget): the parsed target.
        """

        def fail(field_name: str, problem: str) -> TargetFormatError:
            return TargetFormatError(f"{where}: field '{field_name}': {problem}")

        if not isinstance(data, dict):
            raise fail(USER_DATA_KEY, f"expected a dict, got {type(data).__name__}")
        version = data.get("version")
        if version != FORMAT_VERSION:
            raise fail(
                "version",
                f"unsupported target format version {version!r} (this spacy-distill reads "
                f"version {FORMAT_VERSION}); re-run `spacy-distill annotate` to rewrite the file",
            )
        labels = data.get("labels")
        if not isinstance(labels, (list, tuple)) or not labels:
            raise fail("labels", "expected a non-empty list of label names")
        if not all(isinstance(label, str) and label for label in labels):
            raise fail("labels", f"every label must be a non-empty string, got {list(labels)!r}")
        if len(set(labels)) != len(labels):
            raise fail("labels", f"duplicate label names in {list(labels)!r}")
        exclusive = data.get("exclusive")
        if not isinstance(exclusive, bool):
            raise fail("exclusive", f"expected true or false, got {exclusive!r}")
        raw_scores = data.get("scores")
        scores = None
        teacher_id = fingerprint = None
        teacher_info: Dict[str, Any] = {}
        if raw_scores is not None:
            try:
                scores = numpy.asarray(raw_scores, dtype="float32")
            except (TypeError, ValueError):
                raise fail("scores", "expected a list of numbers") from None
            if scores.shape != (len(labels),):
                raise fail(
                    "scores",
                    f"expected {len(labels)} values (one per label), got shape {scores.shape}",
                )
            if not numpy.all(numpy.isfinite(scores)):
                bad = [labels[i] for i in numpy.flatnonzero(~numpy.isfinite(scores))]
                raise fail("scores", f"non-finite teacher output (NaN or inf) for label(s) {bad}")
            if exclusive:
                total = float(numpy.exp(scores.astype("float64")).sum())
                if abs(total - 1.0) > 1e-3:
                    raise fail(
                        "scores",
                        f"exclusive scores must be log-probabilities (exp sums to 1), sum is {total:.4f}",
                    )
            teacher = data.get("teacher")
            if not isinstance(teacher, dict) or not isinstance(teacher.get("id"), str):
                raise fail(
                    "teacher", "scores are present, so a teacher {'id', 'fingerprint'} is required"
                )
            teacher_id = teacher["id"]
            fingerprint = teacher.get("fingerprint")
            if fingerprint is not None and not isinstance(fingerprint, str):
                raise fail("teacher", "fingerprint must be a string")
            teacher_info = {k: v for k, v in teacher.items() if k not in ("id", "fingerprint")}
        hidden = data.get("hidden")
        if hidden is not None and not isinstance(hidden, dict):
            raise fail("hidden", f"expected a dict or null, got {type(hidden).__name__}")
        if hidden is not None:
            # Validate on reading, so a bad file fails here with its doc named rather than in
            # the middle of training.
            from ..hidden.storage import decode_hidden

            decode_hidden(hidden, where, n_tokens=n_tokens)
        raw_provenance = data.get("provenance") or {}
        if not isinstance(raw_provenance, dict):
            raise fail("provenance", "expected a dict")
        unknown = set(raw_provenance) - set(PROVENANCE_FIELDS)
        if unknown:
            raise fail(
                "provenance", f"unknown key(s) {sorted(unknown)}; allowed: {PROVENANCE_FIELDS}"
            )
        line = raw_provenance.get("line")
        if line is not None and not isinstance(line, int):
            raise fail("provenance", f"'line' must be an integer, got {line!r}")
        params = raw_provenance.get("params")
        provenance = Provenance(
            **{name: raw_provenance.get(name) for name in PROVENANCE_FIELDS if name != "params"},
            params=dict(params) if params is not None else None,
        )
        return cls(
            labels=tuple(labels),
            exclusive=exclusive,
            scores=scores,
            teacher_id=teacher_id,
            fingerprint=fingerprint,
            hidden=dict(hidden) if hidden is not None else None,
            provenance=provenance,
            teacher_info=teacher_info,
        )


def set_target(doc: Doc, target: TeacherTarget, gold: Optional[Dict[str, float]] = None) -> Doc:
    """Attach a teacher target (and optional gold cats) to a doc, in place.

    doc (Doc): the doc of the text.
    target (TeacherTarget): what the teacher said.
    gold (Optional[Dict[str, float]]): gold cats (0.0/1.0 per label), or None.
    RETURNS (Doc): the same doc.
    """
    doc.user_data[USER_DATA_KEY] = target.to_dict()
    if gold is not None:
        doc.cats = dict(gold)
    return doc


def get_target(doc: Doc, where: str = "doc") -> Optional[TeacherTarget]:
    """Read and validate the target of a doc, checking its gold cats against its labels.

    doc (Doc): a doc from a target file (e.g. `Example.reference` during training).
    where (str): the location to name in errors.
    RETURNS (Optional[TeacherTarget]): the target, or None if the doc has none.
    """
    data = doc.user_data.get(USER_DATA_KEY)
    if data is None:
        return None
    target = TeacherTarget.from_dict(data, where, n_tokens=len(doc))
    validate_gold(doc.cats, target.labels, target.exclusive, where)
    return target


def validate_gold(
    cats: Dict[str, float], labels: Sequence[str], exclusive: bool, where: str
) -> None:
    """Check gold cats: known labels, values 0 or 1, and one positive label when exclusive."""
    if not cats:
        return
    unknown = [label for label in cats if label not in labels]
    if unknown:
        raise TargetFormatError(
            f"{where}: field 'cats': unknown gold label(s) {unknown}; the labels are {list(labels)}"
        )
    for label, value in cats.items():
        if value not in (0.0, 1.0):
            raise TargetFormatError(
                f"{where}: field 'cats': gold value for {label!r} must be 0 or 1, got {value!r}"
            )
    if exclusive and sum(1 for value in cats.values() if value == 1.0) != 1:
        raise TargetFormatError(
            f"{where}: field 'cats': exclusive gold needs exactly one label with 1.0, got {dict(cats)}"
        )


class TargetFileWriter:
    """Collects target docs and writes them to one `.spacy` file.

    Label sets are checked as docs are added, so that a file never mixes label sets.
    """

    def __init__(self, path: Union[str, Path]):
        self.path = Path(path)
        self.doc_bin = DocBin(store_user_data=True)
        self.labels: Optional[Tuple[str, ...]] = None
        self.exclusive: Optional[bool] = None

    def add(self, doc: Doc) -> None:
        index = len(self.doc_bin)
        target = get_target(doc, f"{self.path}: doc {index}")
        if target is None:
            raise TargetFormatError(f"{self.path}: doc {index}: field '{USER_DATA_KEY}': missing")
        _check_same_labels(target, self.labels, self.exclusive, f"{self.path}: doc {index}")
        if self.labels is None:
            self.labels, self.exclusive = target.labels, target.exclusive
        self.doc_bin.add(doc)

    def __len__(self) -> int:
        return len(self.doc_bin)

    def write(self) -> Path:
        """Write the file (atomically: a crash never leaves half a file)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp_path = self.path.with_name(self.path.name + ".tmp")
        self.doc_bin.to_disk(tmp_path)
        tmp_path.replace(self.path)
        return self.path


def write_targets(docs: Iterable[Doc], path: Union[str, Path]) -> Path:
    """Write target docs to a `.spacy` file.

    docs (Iterable[Doc]): docs carrying targets (see `set_target`).
    path (Union[str, Path]): the output file.
    RETURNS (Path): the path written.
    """
    writer = TargetFileWriter(path)
    for doc in docs:
        writer.add(doc)
    return writer.write()


# An annotate run's scratch files: `OUTPUT.partial.spacy` (the docs of a run that stopped; a rerun
# rewrites them into OUTPUT) and `*.tmp` (a file being written). Directory readers leave them out,
# or a stopped run's docs would be read twice.
PARTIAL_MARK = ".partial."
TMP_SUFFIX = ".tmp"


def is_scratch_file(path: Union[str, Path]) -> bool:
    """Whether a file is an annotate run's scratch file, not an output (see PARTIAL_MARK)."""
    name = Path(path).name
    return PARTIAL_MARK in name or name.endswith(TMP_SUFFIX)


def iter_target_files(path: Union[str, Path]) -> List[Path]:
    """The `.spacy` files of a path: the file itself, or every `.spacy` file below a directory
    except scratch files (`is_scratch_file`), sorted."""
    path = Path(path)
    if path.is_dir():
        found = sorted(p for p in path.rglob("*.spacy") if p.is_file())
        files = [p for p in found if not is_scratch_file(p)]
        if not files and found:
            names = ", ".join(p.name for p in found[:3])
            raise TargetFormatError(
                f"{path}: no target files, only the scratch files of annotate runs that stopped "
                f"({names}); rerun annotate to complete them, or give such a file's own path to read it"
            )
        if not files:
            raise TargetFormatError(f"{path}: no .spacy target files in this directory")
        return files
    if not path.exists():
        raise TargetFormatError(f"{path}: target file not found")
    return [path]


def read_targets(
    path: Union[str, Path], vocab: Optional[Vocab] = None, *, require_target: bool = True
) -> Iterator[Doc]:
    """Read and validate the docs of a target file (or of every `.spacy` file in a directory).

    path (Union[str, Path]): a `.spacy` file or a directory of them.
    vocab (Optional[Vocab]): the vocab to read into (a new one if None).
    require_target (bool): fail on docs without a target (e.g. a plain spaCy corpus).
    YIELDS (Doc): validated docs, with their targets in user data and gold in `doc.cats`.
    """
    vocab = vocab if vocab is not None else Vocab()
    labels: Optional[Tuple[str, ...]] = None
    exclusive: Optional[bool] = None
    for file_path in iter_target_files(path):
        if Path(file_path).suffix.lower() in (".jsonl", ".json", ".csv", ".tsv"):
            # Records, not targets: spaCy's own message would point at its v2 `convert`.
            raise TargetFormatError(
                f"{file_path}: input records, not a target file (.spacy); score them with "
                f"`spacy-distill annotate {file_path} OUT.spacy --teacher TEACHER`, or, gold labels only, "
                f"`spacy-distill convert {file_path} OUT.spacy`"
            )
        try:
            doc_bin = DocBin(store_user_data=True).from_disk(file_path)
        except Exception as err:  # DocBin raises several types on a corrupt file
            raise TargetFormatError(f"{file_path}: not a readable .spacy DocBin ({err})") from err
        for index, doc in enumerate(doc_bin.get_docs(vocab)):
            where = f"{file_path}: doc {index}"
            target = get_target(doc, where)
            if target is None:
                if require_target:
                    raise TargetFormatError(
                        f"{where}: field '{USER_DATA_KEY}': missing; was the file written by "
                        "`spacy-distill annotate` (or saved with store_user_data=True)?"
                    )
                yield doc
                continue
            _check_same_labels(target, labels, exclusive, where)
            labels, exclusive = target.labels, target.exclusive
            yield doc


def _check_same_labels(
    target: TeacherTarget,
    labels: Optional[Tuple[str, ...]],
    exclusive: Optional[bool],
    where: str,
) -> None:
    if labels is not None and target.labels != labels:
        raise TargetFormatError(
            f"{where}: field 'labels': {list(target.labels)} differs from the earlier docs' "
            f"{list(labels)}; one corpus must use one label set"
        )
    if exclusive is not None and target.exclusive != exclusive:
        raise TargetFormatError(
            f"{where}: field 'exclusive': {target.exclusive} differs from the earlier docs'"
        )


def read_target_summary(path: Union[str, Path]) -> Dict[str, Any]:
    """Labels, exclusivity and counts of a target file, for `init-config` and reports."""
    n_docs = n_teacher = n_gold = 0
    labels: Optional[Tuple[str, ...]] = None
    exclusive: Optional[bool] = None
    teachers = set()
    for doc in read_targets(path):
        target = get_target(doc)
        assert target is not None
        labels, exclusive = target.labels, target.exclusive
        n_docs += 1
        n_teacher += target.has_teacher
        n_gold += bool(doc.cats)
        if target.teacher_id is not None:
            teachers.add((target.teacher_id, target.fingerprint))
    if labels is None:
        raise TargetFormatError(f"{path}: holds no docs")
    return {
        "labels": list(labels),
        "exclusive": exclusive,
        "n_docs": n_docs,
        "n_teacher": n_teacher,
        "n_gold": n_gold,
        "teachers": sorted(teachers, key=str),
    }
