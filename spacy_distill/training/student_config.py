"""Complete training configs for distilled students (what `spacy-distill init-config` writes):
the architecture checks and defaults, composed from the sections of `config_templates`."""

from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple, Union

from spacy import util
from thinc.api import Config

from ..arguments import check_float_argument, check_int_argument
from ..data.files import read_report
from ..data.targets import read_target_summary
from ..errors import DistillError
from .config_templates import (
    ARCHITECTURE_PARTS,
    Section,
    distill_hidden_component,
    listener,
    soft_target_loss,
    textcat_model,
    training_config,
)

ARCHITECTURES = tuple(ARCHITECTURE_PARTS)
# Students whose embeddings start from teacher-derived word vectors (`spacy-distill word-vectors`).
VECTOR_ARCHITECTURES = tuple(
    a for a, (_, encoder) in ARCHITECTURE_PARTS.items() if encoder not in (None, "hash-cnn")
)
# Students on `spacy-distill.StaticEmbeddings.v2`: word table + character n-gram fallback (the
# vectors folder must hold subword vectors, `word-vectors --subwords N`).
SUBWORD_ARCHITECTURES = tuple(
    a for a, (_, encoder) in ARCHITECTURE_PARTS.items() if encoder == "subword"
)
DEFAULT_CNN_WIDTH = 64
# The subword students' default width: on tweets 128 of 256 PCA dimensions kept 0.947 of the
# teacher against 0.953 (3 seeds each, within their spread) at half the size (18 MB in float16,
# the size goal being 20): benchmarks/results/students.md, tweeteval_sentiment-minilm.
DEFAULT_SUBWORD_WIDTH = 128
DEFAULT_HIDDEN_WIDTH = 128
# The default student when teacher word vectors with subword vectors are given, and why. The
# figures stay in benchmarks/results/students.md: a number here would go stale with the next run.
DEFAULT_VECTOR_ARCH = "static-subword"
DEFAULT_VECTOR_REASON = (
    "the static-subword student (teacher word vectors + character n-gram vectors, so no word is unknown; "
    "mean+max pooled, linear output) kept the most of the teacher on short noisy text in our benchmarks, "
    "clearly more than bag-of-words, at a fraction of its speed (figures: benchmarks/results/students.md)"
)
SMALL_DATA_DOCS_PER_LABEL = 1000
FACTORIES = ("distill", "textcat")
HIDDEN_LEVELS = ("doc", "token")
HIDDEN_LOSSES = ("mse", "cosine", "both")
HIDDEN_PROJECTORS = ("linear", "maxout")
# The shared tok2vec component of a student with hidden-state distillation.
SHARED_TOK2VEC = "tok2vec"


def make_student_config(
    train: Union[str, Path],
    dev: Optional[Union[str, Path]] = None,
    *,
    arch: Optional[str] = "bow",
    factory: str = "distill",
    temperature: float = 2.0,
    alpha: float = 0.5,
    lang: str = "en",
    max_steps: int = 20000,
    hidden: Optional[str] = None,
    hidden_loss: str = "mse",
    hidden_weight: float = 1.0,
    hidden_projector: str = "linear",
    vectors: Optional[Union[str, Path]] = None,
    width: Optional[int] = None,
    label_trust: Optional[Union[str, Path, Dict[str, float]]] = None,
    component: str = "textcat",
) -> Config:
    """A complete `spacy train` config for a student trained on target files.

    train (Union[str, Path]): the training target file (labels and exclusivity come from it).
    dev (Optional[Union[str, Path]]): the development target file (defaults to train).
    arch (Optional[str]): "bow" (fastest), "cnn" (TextCatReduce over a small CNN), "ensemble",
        or a student on teacher-derived word vectors: "static" (trainable embeddings, mean+max
        pooled), "static-cnn" (one narrow CNN layer over them), "static-ensemble" /
        "static-cnn-ensemble" (either beside bag-of-words), "static-subword" (with character
        n-gram vectors for unseen words) and "static-subword-mlp" (the same with a hidden layer).
        None: `choose_architecture` picks.
    factory (str): "distill" (soft-target component) or "textcat" (spaCy's own, gold only,
        for baselines).
    temperature (float): T of the distillation loss.
    alpha (float): weight of the teacher term for docs that have gold.
    lang (str): the pipeline language.
    max_steps (int): the step budget of training.
    hidden (Optional[str]): add hidden-state distillation ("doc" or "token" level): the
        textcat's tok2vec becomes a shared `tok2vec` component that a `distill_hidden` component
        also listens to (every student but bow; the train file needs hidden states).
    hidden_loss (str): "mse", "cosine" or "both".
    hidden_weight (float): the weight of the hidden-state loss.
    hidden_projector (str): the mapping layer, "linear" or "maxout".
    vectors (Optional[Union[str, Path]]): the folder of `spacy-distill word-vectors` (needed by
        the static* students; written to the config as [paths] word_vectors).
    width (Optional[int]): the static students' embedding width (default: the vectors' dims for
        static and static-ensemble, 128 for the subword ones, 64 for the CNN ones); at most the
        vectors' dims.
    label_trust (Optional[Union[str, Path, Dict[str, float]]]): trust in the teacher per label
        for `spacy-distill.SoftTargetLoss.v2` (alpha scaled by the trust of a doc's gold label):
        "auto" (the teacher's F1 per label on the dev docs that have gold, `spacy_distill.evaluation.trust`),
        the JSON report of `spacy-distill check-teacher --output`, or a dict. None: v1, no trust.
    component (str): the name of the textcat component in the pipeline.
    RETURNS (Config): the filled, validated config.
    """
    # The config would be written with them, and training would fail on them (a temperature of
    # 0 divides by zero) or run on nonsense (a negative loss weight).
    check_float_argument("temperature", temperature, 0.0, above_minimum=True)
    check_float_argument("alpha", alpha, 0.0, 1.0)
    check_int_argument("max_steps", max_steps, 1)
    check_float_argument("hidden_weight", hidden_weight, 0.0)
    if width is not None:
        check_int_argument("width", width, 1)
    if arch is None:
        arch, _ = choose_architecture(train, vectors)
    if arch not in ARCHITECTURES:
        raise DistillError(f"Unknown architecture {arch!r}; choose from {ARCHITECTURES}")
    if factory not in FACTORIES:
        raise DistillError(f"Unknown factory {factory!r}; choose from {FACTORIES}")
    summary = read_target_summary(train)
    dev = dev if dev is not None else train
    dev_summary = read_target_summary(dev)
    if (
        dev_summary["labels"] != summary["labels"]
        or dev_summary["exclusive"] != summary["exclusive"]
    ):
        raise DistillError(
            f"{dev}: labels {dev_summary['labels']} (exclusive={dev_summary['exclusive']}) differ "
            f"from {train}: {summary['labels']} (exclusive={summary['exclusive']})"
        )
    exclusive = summary["exclusive"]
    if factory == "distill":
        factory_name = "distill_textcat" if exclusive else "distill_textcat_multilabel"
        loss = soft_target_loss(
            temperature, alpha, resolve_label_trust(label_trust, dev, summary["labels"])
        )
    else:
        if label_trust is not None:
            raise DistillError(
                "`label_trust` weighs the teacher term of the distilling loss: not for factory 'textcat'"
            )
        factory_name = "textcat" if exclusive else "textcat_multilabel"
        loss = None
    if factory == "textcat" and summary["n_gold"] == 0:
        raise DistillError(f"{train}: no doc has gold labels, so a gold-only baseline cannot train")
    if dev_summary["n_gold"] == 0 and factory == "distill":
        # Without gold on dev, the teacher is the only yardstick for picking the best model.
        score_weights = {"cats_score": 0.0, "cats_teacher_agreement": 1.0}
    else:
        score_weights = {"cats_score": 1.0}
    sections = training_config(
        component=component,
        factory=factory_name,
        model=_model_section(arch, exclusive, vectors, width),
        loss=loss,
        train=train,
        dev=dev,
        labels=summary["labels"],
        lang=lang,
        max_steps=max_steps,
        require_gold=factory == "textcat",
        score_weights=score_weights,
        vectors=vectors,
    )
    if hidden is not None:
        _add_hidden(
            sections,
            component,
            train,
            arch,
            hidden,
            loss=hidden_loss,
            weight=hidden_weight,
            projector=hidden_projector,
        )
    # Fill every default and validate, as `spacy init fill-config` does.
    nlp = util.load_model_from_config(Config(sections), auto_fill=True, validate=False)
    nlp = util.load_model_from_config(nlp.config)
    return nlp.config


def resolve_label_trust(
    label_trust: Optional[Union[str, Path, Dict[str, float]]],
    dev: Union[str, Path],
    labels: Sequence[str],
) -> Optional[Dict[str, float]]:
    """The label -> trust mapping `label_trust` stands for (see `make_student_config`), checked
    against the student's labels: every value in [0, 1], no unknown label."""
    if label_trust is None:
        return None
    if isinstance(label_trust, dict):
        trust, source = dict(label_trust), "label_trust"
    elif str(label_trust) == "auto":
        from ..evaluation.trust import label_trust as trust_from_quality
        from ..evaluation.trust import teacher_quality

        trust, source = (
            trust_from_quality(teacher_quality(dev)),
            f"{dev} (the teacher's F1 per label)",
        )
    else:
        path = Path(label_trust)
        if not path.is_file():
            raise DistillError(
                f"label_trust: {path} is neither 'auto' nor a file (the JSON of `check-teacher --output`)"
            )
        report = read_report(path, "label trust report")
        if not isinstance(report, dict) or not isinstance(report.get("label_trust"), dict):
            raise DistillError(
                f"{path}: no 'label_trust' object (write it with `spacy-distill check-teacher DEV --output`)"
            )
        trust, source = report["label_trust"], str(path)
    unknown = sorted(set(trust) - set(labels))
    if unknown:
        raise DistillError(
            f"{source}: trust for labels the student does not have: {unknown} (its labels: {list(labels)})"
        )
    for label, value in trust.items():
        if (
            not isinstance(value, (int, float))
            or isinstance(value, bool)
            or not 0.0 <= float(value) <= 1.0
        ):
            raise DistillError(
                f"{source}: the trust of {label!r} must be a number in [0, 1], got {value!r}"
            )
    return {label: float(trust[label]) for label in labels if label in trust}


def _model_section(
    arch: str, exclusive: bool, vectors: Optional[Union[str, Path]], width: Optional[int]
) -> Section:
    """The textcat model of an architecture, with the word vectors' width and attribute checked."""
    if arch not in VECTOR_ARCHITECTURES:
        if vectors is not None or width is not None:
            raise DistillError(
                f"`vectors` and `width` are for the students on word vectors ({', '.join(VECTOR_ARCHITECTURES)}), "
                f"not `arch={arch!r}`"
            )
        return textcat_model(arch, exclusive)
    if vectors is None:
        raise DistillError(
            f"`arch={arch!r}` starts from teacher-derived word vectors: make them with "
            "`spacy-distill word-vectors VECTORS --teacher TEACHER --data TRAIN.spacy` and pass `vectors=VECTORS`"
        )
    from ..vectors.table import WordVectors

    table = WordVectors.from_disk(vectors)
    if width is None:
        if "cnn" in arch:
            width = min(DEFAULT_CNN_WIDTH, table.dims)
        elif arch in SUBWORD_ARCHITECTURES:
            width = min(DEFAULT_SUBWORD_WIDTH, table.dims)
        else:
            width = table.dims
    if not 1 <= width <= table.dims:
        raise DistillError(
            f"`width` must be between 1 and the vectors' {table.dims} dims ({vectors}), got {width}"
        )
    if arch in SUBWORD_ARCHITECTURES and table.subwords is None:
        raise DistillError(
            f"`arch={arch!r}` falls back on character n-gram vectors for unseen words, but {vectors} holds none: "
            "remake it with `spacy-distill word-vectors ... --subwords 32768` (the default)"
        )
    return textcat_model(
        arch, exclusive, width=width, attr=table.attr, hidden_width=DEFAULT_HIDDEN_WIDTH
    )


def choose_architecture(
    train: Union[str, Path], vectors: Optional[Union[str, Path]] = None
) -> Tuple[str, str]:
    """The default student for a training file, and why.

    train (Union[str, Path]): the training target file.
    vectors (Optional[Union[str, Path]]): teacher-derived word vectors, if made.
    RETURNS (Tuple[str, str]): the architecture and a sentence saying why.
    """
    summary = read_target_summary(train)
    n_docs, n_labels = summary["n_docs"], len(summary["labels"])
    size = f"{n_docs} training docs, {n_labels} labels"
    if vectors is None:
        # Without pretrained embeddings every n-gram weight comes from the data alone: the fewer
        # docs per label, the more teacher-derived vectors have to add.
        hint = (
            f"with about {n_docs // max(n_labels, 1)} docs per label, make word vectors "
            "(`spacy-distill word-vectors`) and pass `vectors=VECTORS`: a static student starts from the "
            "teacher's word geometry instead of nothing"
            if n_docs < SMALL_DATA_DOCS_PER_LABEL * n_labels
            else "word vectors (`spacy-distill word-vectors`) give a student that starts from the teacher's words"
        )
        return "bow", (
            f"{size}, no teacher word vectors (`vectors`): bag-of-words is the fastest student and as "
            f"accurate as spaCy's CNN in our benchmarks; {hint}"
        )
    from ..vectors.table import WordVectors

    if WordVectors.from_disk(vectors).subwords is None:
        return "static", (
            f"{size}, teacher word vectors given (without subword vectors): the static-embedding student "
            "(mean+max pooled teacher vectors, trained further) runs at about bag-of-words speed; remake the "
            "vectors with `spacy-distill word-vectors ... --subwords 32768 --teacher-vocab` (subwords are the "
            "default) for the static-subword students, which also place words the training data never showed. "
            f"{DEFAULT_VECTOR_REASON}"
        )
    return (
        DEFAULT_VECTOR_ARCH,
        f"{size}, teacher word vectors with subword vectors given: {DEFAULT_VECTOR_REASON}",
    )


def _add_hidden(
    sections: Section,
    component: str,
    train: Union[str, Path],
    arch: str,
    level: str,
    *,
    loss: str,
    weight: float,
    projector: str,
) -> None:
    """Move the textcat's tok2vec into a shared tok2vec component that the textcat and a
    `distill_hidden` component listen to."""
    if level not in HIDDEN_LEVELS:
        raise DistillError(f"`hidden` must be one of {HIDDEN_LEVELS}, got {level!r}")
    if loss not in HIDDEN_LOSSES:
        raise DistillError(f"`hidden_loss` must be one of {HIDDEN_LOSSES}, got {loss!r}")
    if projector not in HIDDEN_PROJECTORS:
        raise DistillError(
            f"`hidden_projector` must be one of {HIDDEN_PROJECTORS}, got {projector!r}"
        )
    if arch == "bow":
        raise DistillError(
            "`hidden` needs a student with a tok2vec to teach, but `arch='bow'` has none (its "
            "features are hashed n-grams): use `arch='cnn'`, `arch='ensemble'` or one of the static students"
        )
    teacher_width = _stored_hidden_width(train, level)
    model = sections["components"][component]["model"]
    tok2vec = model["tok2vec"]
    tok2vec_width = tok2vec["width"] if "width" in tok2vec else tok2vec["encode"]["width"]
    model["tok2vec"] = listener(tok2vec_width, SHARED_TOK2VEC)
    sections["components"][SHARED_TOK2VEC] = {"factory": "tok2vec", "model": tok2vec}
    sections["components"]["distill_hidden"] = distill_hidden_component(
        listener(tok2vec_width, SHARED_TOK2VEC),
        teacher_width=teacher_width,
        level=level,
        projector=projector,
        loss=loss,
        weight=weight,
    )
    sections["nlp"]["pipeline"] = [SHARED_TOK2VEC, component, "distill_hidden"]


def _stored_hidden_width(train: Union[str, Path], level: str) -> int:
    """The width of the hidden states stored in the first doc of the training file."""
    from ..data.targets import USER_DATA_KEY, read_targets
    from ..hidden.storage import decode_hidden

    for index, doc in enumerate(read_targets(train)):
        hidden = (doc.user_data.get(USER_DATA_KEY) or {}).get("hidden")
        where = f"{train}: doc {index}"
        if hidden is None:
            raise DistillError(
                f"{where}: field 'hidden': missing; `hidden={level!r}` needs hidden states in the "
                f"training data: annotate it with `spacy-distill annotate --hidden {level}`"
            )
        stored = decode_hidden(hidden, where, n_tokens=len(doc))
        if (stored.doc if level == "doc" else stored.tokens) is None:
            raise DistillError(
                f"{where}: field 'hidden': holds no {level}-level states; annotate with "
                f"`spacy-distill annotate --hidden {level}` (or both)"
            )
        return stored.width
    raise DistillError(f"{train}: holds no docs")
