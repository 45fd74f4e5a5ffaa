"""`spacy-distill export`: a trained student as a plain spaCy pipeline, ready for `spacy package`.

What changes, and why:
* training-only components (hidden-state distillation) are removed;
* a shared `tok2vec` component that only the text classifier still listens to (hidden-state
  students train with one) is copied into the classifier (`nlp.replace_listeners`) and removed:
  same weights and predictions, but docs no longer carry a `doc.tensor` the classifier does not
  need (it cost up to 1 KB per token held, and time to write);
* `distill_textcat*` become spaCy's `textcat` / `textcat_multilabel` with the same model config
  and weights: the distilling classes only change training, so predictions are identical
  (checked on texts before anything is written);
* `[corpora]` readers of target files become `spacy.Corpus.v1` (target files are DocBins with
  gold in `doc.cats`), so the exported config needs no plugin for anything but the filter;
* the word and n-gram tables of static students are stored as float16 (`half_precision`): half
  the package size and load memory, probabilities within HALF_PRECISION_TOLERANCE of the
  trained student's (checked);
* optionally a `semantic_filter` with the tuned thresholds and band written into its config;
* `meta.json` gains a distillation card under `spacy_distill.card`: teacher, loss, data sizes and,
  given `evaluate`'s report, retention and speed-up.

Only the filter (if added) ties the package to spacy-distill, whose core install is spaCy and a
few small packages: the exported student never needs torch or transformers.
"""

import copy
import re
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Union

import numpy
import spacy
from packaging.version import InvalidVersion, Version
from spacy.language import Language
from spacy.util import load_model_from_config
from thinc.api import Config, Model

from ..data.files import read_report
from ..errors import DistillError
from ..filter.escalations import DEFAULT_MAX_BYTES
from ..filter.settings import stored_settings
from ..ml.empty_docs import GUARD_CALLBACK, needs_guard
from ..ml.static_embeddings import store_in_half_precision
from ..pipeline.meta import write_card
from ..pipeline.textcat_lookup import find_textcat
from .card import card_description, distillation_card

# distilling factory -> (spaCy factory, spaCy scorer)
PLAIN_TEXTCAT = {
    "distill_textcat": ("textcat", "spacy.textcat_scorer.v2"),
    "distill_textcat_multilabel": ("textcat_multilabel", "spacy.textcat_multilabel_scorer.v2"),
}
TRAINING_ONLY_FACTORIES = {"distill_hidden"}
TARGET_READER = "spacy-distill.TargetCorpus.v1"
FILTER_FACTORY = "semantic_filter"
EQUIVALENCE_TOLERANCE = 1e-6
# float16 keeps 11 significant bits: a static student's probabilities move by about 1e-3.
HALF_PRECISION_TOLERANCE = 1e-2

# Texts for the equivalence check when the caller gives none: words the student may or may not
# know, empty and odd strings.
FALLBACK_TEXTS = [
    "",
    "Hello, how are you today?",
    "WINNER!! You have won a FREE prize, call now to claim.",
    "I didn't like the movie at all; the plot was dull and far too long.",
    "A wonderful, moving film with great performances.",
    "Meeting moved to 3pm tomorrow :)",
    "😀 🙃 ???",
    "Das ist ein kurzer Satz auf Deutsch.",
]

# spaCy's rule for a package name (`spacy package --name`, in spacy.cli.package, whose check
# `_is_permitted_package_name` is private, so it is mirrored here): a Python identifier that
# PEP 426 permits. spaCy checks only a name given on its command line, not meta.json's, and
# builds paths from name and version: "../x" would write outside the output folder.
PACKAGE_NAME = re.compile(r"^([A-Z0-9]|[A-Z0-9][A-Z0-9._-]*[A-Z0-9])$", re.IGNORECASE)


def check_package_name(name: Any) -> None:
    """Raise a DistillError unless `name` is a package name `spacy package` accepts.

    name (Any): the name for meta.json (without the language prefix spaCy adds).
    """
    if not isinstance(name, str) or not name.isidentifier() or not PACKAGE_NAME.match(name):
        raise DistillError(
            f"name {name!r}: not a package name spaCy accepts; use ASCII letters, digits and _, "
            "starting with a letter and ending with a letter or digit (e.g. spam_filter)"
        )


def check_package_version(version: Any) -> None:
    """Raise a DistillError unless `version` is a PEP 440 version (e.g. 1.0.0).

    version (Any): the version for meta.json.
    """
    try:
        Version(version if isinstance(version, str) else "")
    except InvalidVersion:
        raise DistillError(
            f"version {version!r}: not a package version (PEP 440), e.g. 1.0.0"
        ) from None


def is_training_only(nlp: Language, name: str) -> bool:
    """Whether a component only matters during training (and is dropped on export)."""
    factory = nlp.get_pipe_meta(name).factory
    return factory in TRAINING_ONLY_FACTORIES or bool(
        getattr(nlp.get_pipe(name), "is_training_only", False)
    )


def exported_config(
    nlp: Language,
    *,
    filter_config: Optional[Dict[str, Any]] = None,
) -> Config:
    """The config of the exported pipeline (see the module docstring)."""
    config = copy.deepcopy(nlp.config)
    pipeline: List[str] = list(config["nlp"]["pipeline"])
    for name in list(pipeline):
        if is_training_only(nlp, name):
            pipeline.remove(name)
            config["components"].pop(name, None)
            if name in config["nlp"].get("disabled", []):
                config["nlp"]["disabled"].remove(name)
    for name in pipeline:
        block = config["components"].get(name, {})
        factory = block.get("factory")
        if factory in PLAIN_TEXTCAT:
            plain, scorer = PLAIN_TEXTCAT[factory]
            config["components"][name] = {
                "factory": plain,
                "model": block["model"],
                "threshold": block.get("threshold", 0.0 if plain == "textcat" else 0.5),
                "scorer": {"@scorers": scorer},
            }
    for key, reader in list((config.get("corpora") or {}).items()):
        if isinstance(reader, dict) and reader.get("@readers") == TARGET_READER:
            config["corpora"][key] = {
                "@readers": "spacy.Corpus.v1",
                "path": reader.get("path"),
                "max_length": 0,
                "gold_preproc": False,
                "limit": reader.get("limit", 0),
                "augmenter": None,
            }
    if filter_config is not None:
        existing = [n for n in pipeline if config["components"][n].get("factory") == FILTER_FACTORY]
        for name in existing:
            pipeline.remove(name)
            config["components"].pop(name)
        name = existing[0] if existing else FILTER_FACTORY
        pipeline.append(name)
        config["components"][name] = {"factory": FILTER_FACTORY, **filter_config}
    config["nlp"]["pipeline"] = pipeline
    if any(
        needs_guard(nlp.get_pipe(n).model)
        for n in pipeline
        if n in nlp.pipe_names and hasattr(nlp.get_pipe(n), "model")
    ):
        callback = config["nlp"].get("after_pipeline_creation")
        if callback and callback.get("@callbacks") != GUARD_CALLBACK:
            raise DistillError(
                f"[nlp.after_pipeline_creation] is already set ({callback}); spacy-distill needs it for "
                f"{GUARD_CALLBACK}, which keeps empty docs from crashing the n-gram features: "
                "call that guard from your own callback and remove the block before exporting"
            )
        config["nlp"]["after_pipeline_creation"] = {"@callbacks": GUARD_CALLBACK}
    init_components = (config.get("initialize") or {}).get("components") or {}
    for name in list(init_components):
        if name not in pipeline:
            init_components.pop(name)
    if "training" in config:
        config["training"]["frozen_components"] = [
            n for n in config["training"].get("frozen_components", []) if n in pipeline
        ]
        config["training"]["annotating_components"] = [
            n for n in config["training"].get("annotating_components", []) if n in pipeline
        ]
        config["training"]["score_weights"] = {}
    return Config(config)


def filter_settings(
    nlp: Language,
    textcat: str,
    *,
    actions: Dict[str, str],
    default_action: Optional[str] = None,
) -> Dict[str, Any]:
    """The `semantic_filter` config: the thresholds and band `tune` stored, and the actions
    given here or, if none are, the ones `tune` judged the thresholds with. An escalation log
    the pipeline's own filter records to (`record`) is kept."""
    stored = stored_settings(nlp)
    existing = next(
        (
            nlp.config["components"][name]
            for name in nlp.pipe_names
            if nlp.get_pipe_meta(name).factory == FILTER_FACTORY
        ),
        {},
    )
    return {
        "textcat": textcat,
        "actions": dict(actions or stored["actions"]),  # type: ignore[arg-type]
        "default_action": default_action or stored["default_action"],
        "thresholds": stored["thresholds"],
        "escalation_margin": stored["escalation_margin"],
        "teacher": None,
        "teacher_thresholds": {},
        "record": existing.get("record"),
        "record_max_bytes": existing.get("record_max_bytes", DEFAULT_MAX_BYTES),
    }


def check_equivalence(
    original: Language,
    exported: Language,
    textcat: str,
    texts: Sequence[str],
    tolerance: float = EQUIVALENCE_TOLERANCE,
) -> float:
    """The largest difference between the two pipelines' `doc.cats` on these texts; raises if
    it exceeds `tolerance`."""
    labels = list(original.get_pipe(textcat).labels)
    before = _cats(original, texts, labels)
    after = _cats(exported, texts, labels)
    worst = float(numpy.abs(before - after).max()) if len(texts) else 0.0
    if not worst <= tolerance:
        raise DistillError(
            f"the exported classifier's predictions differ from the trained one's by up to {worst:.3g} "
            f"(tolerance {tolerance}); nothing was written"
        )
    return worst


def _cats(nlp: Language, texts: Iterable[str], labels: List[str]) -> numpy.ndarray:
    filters = [n for n in nlp.pipe_names if nlp.get_pipe_meta(n).factory == FILTER_FACTORY]
    with nlp.select_pipes(disable=filters):
        return numpy.asarray(
            [[doc.cats.get(label, numpy.nan) for label in labels] for doc in nlp.pipe(texts)],
            dtype="float64",
        ).reshape(-1, len(labels))


def export_pipeline(
    trained: Union[str, Path],
    output: Union[str, Path],
    *,
    component: Optional[str] = None,
    add_filter: bool = False,
    actions: Optional[Dict[str, str]] = None,
    default_action: Optional[str] = None,
    report: Optional[Union[str, Path]] = None,
    train_data: Optional[Union[str, Path]] = None,
    dev_data: Optional[Union[str, Path]] = None,
    check_texts: Optional[Sequence[str]] = None,
    name: Optional[str] = None,
    version: Optional[str] = None,
    license: Optional[str] = None,
    half_precision: bool = True,
) -> Dict[str, Any]:
    """Export a trained student (see the module docstring).

    trained (Union[str, Path]): the trained pipeline (e.g. training/student/model-best).
    output (Union[str, Path]): the folder to write; nothing is written if a check fails.
    component (Optional[str]): the text classifier (None: the only one).
    add_filter (bool): add (or refresh) a `semantic_filter` with the tuned thresholds.
    actions (Optional[Dict[str, str]]): the filter's label -> action.
    default_action (Optional[str]): the filter's verdict when no label is decided (None: the one
        `tune` stored, else allow).
    report (Optional[Union[str, Path]]): `spacy-distill evaluate`'s report.json, for the card.
    train_data, dev_data (Optional[Union[str, Path]]): the target files it was trained on
        (default: `paths.train` / `paths.dev` of its config, where they exist).
    check_texts (Optional[Sequence[str]]): texts for the equivalence check (default: a few
        built-in ones).
    name, version (Optional[str]): `meta.json` name and version for `spacy package` (checked
        by its rules: see `check_package_name`, `check_package_version`).
    license (Optional[str]): `meta.json` licence of the package (the student inherits the terms
        of its data and teacher: state them).
    half_precision (bool): store static students' embedding tables as float16.
    RETURNS (Dict[str, Any]): output, removed and converted components, the largest
        prediction difference, the bytes half precision saved, the card and warnings.
    """
    output = Path(output)
    if name:
        check_package_name(name)
    if version:
        check_package_version(version)
    try:
        nlp = spacy.load(trained)
    except OSError as err:
        raise DistillError(f"{trained}: cannot load the trained pipeline ({err})") from err
    textcat = find_textcat(nlp, component)
    report_data = read_report(report, "evaluation report") if report is not None else None
    train_path = _data_path(train_data, nlp.config["paths"].get("train"), "train")
    dev_path = _data_path(dev_data, nlp.config["paths"].get("dev"), "dev")
    card = distillation_card(
        nlp, textcat, train_data=train_path, dev_data=dev_path, report=report_data
    )
    filter_config = None
    if add_filter:
        filter_config = filter_settings(
            nlp, textcat, actions=actions or {}, default_action=default_action
        )
    config = exported_config(nlp, filter_config=filter_config)
    meta = copy.deepcopy(nlp.meta)
    write_card(meta, card)
    if name:
        meta["name"] = name
    if version:
        meta["version"] = version
    if license:
        meta["license"] = license
    meta["description"] = card_description(card)
    exported = load_model_from_config(
        config, vocab=nlp.vocab, meta=meta, auto_fill=True, validate=True
    )
    exported.tokenizer.from_bytes(nlp.tokenizer.to_bytes())
    for pipe_name, pipe in exported.pipeline:
        if pipe_name in nlp.pipe_names and hasattr(pipe, "from_bytes"):
            pipe.from_bytes(nlp.get_pipe(pipe_name).to_bytes(exclude=["vocab"]), exclude=["vocab"])
    exported.meta.update(meta)
    inlined = inline_tok2vec(exported)
    halved = 0
    if half_precision:
        halved = sum(
            store_in_half_precision(pipe.model)
            for _, pipe in exported.pipeline
            if isinstance(getattr(pipe, "model", None), Model)
        )
    if halved:
        card["tables"] = {
            "dtype": "float16",
            "bytes_saved": halved,
            "tolerance": HALF_PRECISION_TOLERANCE,
        }
        write_card(exported.meta, card)
    texts = list(check_texts or FALLBACK_TEXTS)
    difference = check_equivalence(
        nlp,
        exported,
        textcat,
        texts,
        tolerance=HALF_PRECISION_TOLERANCE if halved else EQUIVALENCE_TOLERANCE,
    )
    # The whole exported pipeline, filter included, must run before anything is written.
    for _ in exported.pipe(texts):
        pass
    output.parent.mkdir(parents=True, exist_ok=True)  # spaCy's to_disk makes the last folder only
    exported.to_disk(output)
    warnings = []
    if not exported.meta.get("license"):
        warnings.append(
            "meta.json states no licence: the package inherits the terms of its training data and "
            "teacher; pass license"
        )
    removed = [n for n in nlp.pipe_names if n not in exported.pipe_names and n not in inlined]
    converted = {
        n: config["components"][n]["factory"]
        for n in nlp.pipe_names
        if nlp.get_pipe_meta(n).factory in PLAIN_TEXTCAT and n in exported.pipe_names
    }
    return {
        "output": str(output),
        "pipeline": exported.pipe_names,
        "removed": removed,
        "converted": converted,
        "inlined": inlined,
        "max_difference": difference,
        "half_precision_bytes_saved": halved,
        "n_checked": len(check_texts or FALLBACK_TEXTS),
        "card": card,
        "warnings": warnings,
    }


def inline_tok2vec(nlp: Language) -> List[str]:
    """Copy each `tok2vec` component into the components that listen to it, where all of them
    are text classifiers, and remove it. RETURNS the removed components' names."""
    removed = []
    for name in [n for n in nlp.pipe_names if nlp.get_pipe_meta(n).factory == "tok2vec"]:
        listening = list(nlp.get_pipe(name).listening_components)
        if not listening or any(
            not nlp.get_pipe_meta(n).factory.startswith("textcat") for n in listening
        ):
            continue
        for listener in listening:
            paths = list(_listener_paths(nlp.config["components"][listener], name))
            nlp.replace_listeners(name, listener, paths)
        nlp.remove_pipe(name)
        removed.append(name)
    return removed


def _listener_paths(block: Any, upstream: str, prefix: str = "") -> Iterable[str]:
    """Dotted config paths of the `spacy.Tok2VecListener.v1` blocks on `upstream` (or `*`)."""
    if not isinstance(block, dict):
        return
    if block.get("@architectures", "").startswith("spacy.Tok2VecListener") and block.get(
        "upstream"
    ) in (upstream, "*"):
        yield prefix
        return
    for key, value in block.items():
        yield from _listener_paths(value, upstream, f"{prefix}.{key}" if prefix else key)


def _data_path(given, from_config, split: str) -> Optional[Path]:
    if given is not None:
        path = Path(given)
        if not path.exists():
            raise DistillError(f"{path}: {split} data not found")
        return path
    if from_config:
        path = Path(str(from_config))
        return path if path.exists() else None
    return None
