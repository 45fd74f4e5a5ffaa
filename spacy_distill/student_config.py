"""Complete training configs for distilled students, written by `spacy-distill init-config`."""
import json
from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple, Union

import srsly
from spacy import util
from thinc.api import Config

from .arguments import check_float_argument, check_int_argument
from .errors import DistillError
from .targets import read_target_summary

ARCHITECTURES = ("bow", "cnn", "ensemble", "static", "static-cnn", "static-ensemble", "static-cnn-ensemble",
                 "static-subword", "static-subword-mlp")
# Students whose embeddings start from teacher-derived word vectors (`spacy-distill word-vectors`).
VECTOR_ARCHITECTURES = ("static", "static-cnn", "static-ensemble", "static-cnn-ensemble", "static-subword",
                        "static-subword-mlp")
# Students on `spacy-distill.StaticEmbeddings.v2`: word table + character n-gram fallback (the
# vectors folder must hold subword vectors, `word-vectors --subwords N`).
SUBWORD_ARCHITECTURES = ("static-subword", "static-subword-mlp")
DEFAULT_CNN_WIDTH = 64
# The subword students' default width: on tweets 128 of 256 PCA dimensions kept 0.947 of the
# teacher against 0.953 (3 seeds each, within their spread) at half the size (18 MB in float16,
# the size goal being 20): benchmarks/results/students.md, tweeteval_sentiment-minilm.
DEFAULT_SUBWORD_WIDTH = 128
DEFAULT_HIDDEN_WIDTH = 128
# The default student when teacher word vectors with subword vectors are given, and why
# (benchmarks/results/students.md).
DEFAULT_VECTOR_ARCH = "static-subword"
DEFAULT_VECTOR_REASON = (
    "the static-subword student (teacher word vectors + character n-gram vectors, so no word is unknown; "
    "mean+max pooled, linear output) kept the most of the teacher on short noisy text in our benchmark "
    "(tweeteval_sentiment, MiniLM teachers: 0.953 +- 0.006 of its macro-F1 over 3 seeds against a teacher "
    "at 0.707, 0.980 over 2 against one at 0.687, at about 0.6x the tokenizer's docs/s; bag-of-words "
    "kept 0.88-0.89) (benchmarks/results/students.md)"
)
SMALL_DATA_DOCS_PER_LABEL = 1000
FACTORIES = ("distill", "textcat")
HIDDEN_LEVELS = ("doc", "token")
HIDDEN_LOSSES = ("mse", "cosine", "both")
HIDDEN_PROJECTORS = ("linear", "maxout")

_HASH_EMBED_CNN = """
@architectures = "spacy.HashEmbedCNN.v2"
pretrained_vectors = null
width = 64
depth = 2
embed_size = 2000
window_size = 1
maxout_pieces = 3
subword_features = true
"""

_STATIC_EMBEDDINGS = """
@architectures = "spacy-distill.StaticEmbeddings.v1"
width = {width}
vectors = ${{paths.word_vectors}}
attr = "{attr}"
"""

# A narrow, one-layer CNN over the static embeddings: the context the static student lacks
# (negation, "not good") at a fraction of spaCy's default CNN's cost.
_STATIC_CNN = """
@architectures = "spacy.Tok2Vec.v2"

[components.textcat.model.tok2vec.embed]
@architectures = "spacy-distill.StaticEmbeddings.v1"
width = {width}
vectors = ${{paths.word_vectors}}
attr = "{attr}"

[components.textcat.model.tok2vec.encode]
@architectures = "spacy.MaxoutWindowEncoder.v2"
width = {width}
depth = 1
window_size = 1
maxout_pieces = 3
"""

_STATIC_SUBWORD_EMBEDDINGS = """
@architectures = "spacy-distill.StaticEmbeddings.v2"
width = {width}
vectors = ${{paths.word_vectors}}
attr = "{attr}"
subwords = true
"""

# Mean + max pooling, one Maxout layer, the output layer: spacy.TextCatReduce.v1 with a hidden layer.
_POOLED_HIDDEN = """
[components.textcat.model]
@architectures = "spacy-distill.TextCatPooled.v1"
exclusive_classes = {exclusive}
use_reduce_mean = true
use_reduce_max = true
hidden_width = {hidden_width}
hidden_dropout = 0.1
maxout_pieces = 2

[components.textcat.model.tok2vec]
"""

_REDUCE = """
[components.textcat.model]
@architectures = "spacy.TextCatReduce.v1"
exclusive_classes = {exclusive}
use_reduce_first = false
use_reduce_last = false
use_reduce_max = true
use_reduce_mean = true

[components.textcat.model.tok2vec]
"""

_ENSEMBLE = """
[components.textcat.model]
@architectures = "spacy.TextCatEnsemble.v2"

[components.textcat.model.linear_model]
@architectures = "spacy.TextCatBOW.v3"
exclusive_classes = {exclusive}
length = 262144
ngram_size = 2
no_output_layer = false

[components.textcat.model.tok2vec]
"""

_MODELS = {
    "bow": """
[components.textcat.model]
@architectures = "spacy.TextCatBOW.v3"
exclusive_classes = {exclusive}
length = 262144
ngram_size = 2
no_output_layer = false
""",
    "cnn": """
[components.textcat.model]
@architectures = "spacy.TextCatReduce.v1"
exclusive_classes = {exclusive}
use_reduce_first = false
use_reduce_last = false
use_reduce_max = true
use_reduce_mean = true

[components.textcat.model.tok2vec]
"""
    + _HASH_EMBED_CNN,
    "ensemble": """
[components.textcat.model]
@architectures = "spacy.TextCatEnsemble.v2"

[components.textcat.model.linear_model]
@architectures = "spacy.TextCatBOW.v3"
exclusive_classes = {exclusive}
length = 262144
ngram_size = 2
no_output_layer = false

[components.textcat.model.tok2vec]
"""
    + _HASH_EMBED_CNN,
    "static": _REDUCE + _STATIC_EMBEDDINGS,
    "static-cnn": _REDUCE + _STATIC_CNN,
    "static-ensemble": _ENSEMBLE + _STATIC_EMBEDDINGS,
    "static-cnn-ensemble": _ENSEMBLE + _STATIC_CNN,
    "static-subword": _REDUCE + _STATIC_SUBWORD_EMBEDDINGS,
    "static-subword-mlp": _POOLED_HIDDEN + _STATIC_SUBWORD_EMBEDDINGS,
}

_BASE = """
[paths]
train = {train}
dev = {dev}
{vector_paths}
[system]
seed = 0
gpu_allocator = null

[nlp]
lang = "{lang}"
pipeline = ["textcat"]
batch_size = 1000

[components]

[components.textcat]
factory = "{factory}"
{loss}
{model}

[corpora]

[corpora.train]
@readers = "spacy-distill.TargetCorpus.v1"
path = ${{paths.train}}
require_gold = {require_gold}

[corpora.dev]
@readers = "spacy-distill.TargetCorpus.v1"
path = ${{paths.dev}}

[training]
dropout = 0.1
patience = 1600
max_epochs = 0
max_steps = {max_steps}
eval_frequency = 200

[training.logger]
# A bar between evaluations: a long run shows it is moving, not only a row per 200 steps.
@loggers = "spacy.ConsoleLogger.v1"
progress_bar = true

[training.batcher]
@batchers = "spacy.batch_by_words.v1"
discard_oversize = false
tolerance = 0.2

[training.batcher.size]
@schedules = "compounding.v1"
start = 100
stop = 1000
compound = 1.001

[training.optimizer]
@optimizers = "Adam.v1"
learn_rate = 0.001

[training.score_weights]
{score_weights}

[initialize]

[initialize.components]

[initialize.components.textcat]
labels = {labels}
"""

# v1, or v2 with a `label_trust = {...}` line (one JSON object: labels need not be config keys).
_LOSS = """
[components.textcat.loss]
@losses = "spacy-distill.SoftTargetLoss.{version}"
temperature = {temperature}
alpha = {alpha}
normalize = true
{trust}"""


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
) -> Config:
    """A complete `spacy train` config for a student trained on target files.

    train (Union[str, Path]): the training target file (labels and exclusivity come from it).
    dev (Optional[Union[str, Path]]): the development target file (defaults to train).
    arch (Optional[str]): "bow" (fastest), "cnn" (TextCatReduce over a small CNN), "ensemble",
        or a student on teacher-derived word vectors: "static" (trainable embeddings, mean+max
        pooled), "static-cnn" (one narrow CNN layer over them) and "static-ensemble" /
        "static-cnn-ensemble" (either beside bag-of-words). None: `choose_architecture` picks.
    factory (str): "distill" (soft-target component) or "textcat" (spaCy's own, gold only,
        for baselines).
    temperature (float): T of the distillation loss.
    alpha (float): weight of the teacher term for docs that have gold.
    lang (str): the pipeline language.
    max_steps (int): the step budget of training.
    hidden (Optional[str]): add hidden-state distillation ("doc" or "token" level): the
        textcat's CNN becomes a shared `tok2vec` component that a `distill_hidden` component
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
        "auto" (the teacher's F1 per label on the dev docs that have gold, `spacy_distill.trust`),
        the JSON report of `spacy-distill check-teacher --output`, or a dict. None: v1, no trust.
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
    if dev_summary["labels"] != summary["labels"] or dev_summary["exclusive"] != summary["exclusive"]:
        raise DistillError(
            f"{dev}: labels {dev_summary['labels']} (exclusive={dev_summary['exclusive']}) differ "
            f"from {train}: {summary['labels']} (exclusive={summary['exclusive']})"
        )
    exclusive = summary["exclusive"]
    if factory == "distill":
        factory_name = "distill_textcat" if exclusive else "distill_textcat_multilabel"
        trust = resolve_label_trust(label_trust, dev, summary["labels"])
        loss = _LOSS.format(
            version="v1" if trust is None else "v2", temperature=float(temperature), alpha=float(alpha),
            trust="" if trust is None else f"label_trust = {json.dumps(trust)}\n",
        )
    else:
        if label_trust is not None:
            raise DistillError("label_trust weighs the teacher term of the distilling loss: not for factory 'textcat'")
        factory_name = "textcat" if exclusive else "textcat_multilabel"
        loss = ""
    if factory == "textcat" and summary["n_gold"] == 0:
        raise DistillError(f"{train}: no doc has gold labels, so a gold-only baseline cannot train")
    if dev_summary["n_gold"] == 0 and factory == "distill":
        # Without gold on dev, the teacher is the only yardstick for picking the best model.
        score_weights = "cats_score = 0.0\ncats_teacher_agreement = 1.0"
    else:
        score_weights = "cats_score = 1.0"
    text = _BASE.format(
        train=_quote(train),
        dev=_quote(dev),
        lang=lang,
        factory=factory_name,
        loss=loss,
        model=_model_block(arch, exclusive, vectors, width),
        vector_paths=f"word_vectors = {_quote(vectors)}\n" if vectors is not None else "",
        require_gold=str(factory == "textcat").lower(),
        max_steps=int(max_steps),
        score_weights=score_weights,
        labels=_json_list(summary["labels"]),
    )
    config = util.load_config_from_str(text, interpolate=False)
    if hidden is not None:
        config = _add_hidden(
            config, train, arch, hidden, loss=hidden_loss, weight=hidden_weight, projector=hidden_projector
        )
    # Fill every default and validate, as `spacy init fill-config` does.
    nlp = util.load_model_from_config(config, auto_fill=True, validate=False)
    nlp = util.load_model_from_config(nlp.config)
    return nlp.config


def resolve_label_trust(
    label_trust: Optional[Union[str, Path, Dict[str, float]]], dev: Union[str, Path], labels: Sequence[str]
) -> Optional[Dict[str, float]]:
    """The label -> trust mapping `label_trust` stands for (see `make_student_config`), checked
    against the student's labels: every value in [0, 1], no unknown label."""
    if label_trust is None:
        return None
    if isinstance(label_trust, dict):
        trust, source = dict(label_trust), "label_trust"
    elif str(label_trust) == "auto":
        from .trust import label_trust as trust_from_quality, teacher_quality

        trust, source = trust_from_quality(teacher_quality(dev)), f"{dev} (the teacher's F1 per label)"
    else:
        path = Path(label_trust)
        if not path.is_file():
            raise DistillError(f"label_trust: {path} is neither 'auto' nor a file (the JSON of `check-teacher --output`)")
        try:
            report = srsly.read_json(path)
        except ValueError as err:
            raise DistillError(f"{path}: not JSON ({err})") from err
        if not isinstance(report, dict) or not isinstance(report.get("label_trust"), dict):
            raise DistillError(f"{path}: no 'label_trust' object (write it with `spacy-distill check-teacher DEV --output`)")
        trust, source = report["label_trust"], str(path)
    unknown = sorted(set(trust) - set(labels))
    if unknown:
        raise DistillError(f"{source}: trust for labels the student does not have: {unknown} (its labels: {list(labels)})")
    for label, value in trust.items():
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0.0 <= float(value) <= 1.0:
            raise DistillError(f"{source}: the trust of {label!r} must be a number in [0, 1], got {value!r}")
    return {label: float(trust[label]) for label in labels if label in trust}


def _model_block(arch: str, exclusive: bool, vectors: Optional[Union[str, Path]], width: Optional[int]) -> str:
    """The [components.textcat.model] blocks of an architecture."""
    if arch not in VECTOR_ARCHITECTURES:
        if vectors is not None or width is not None:
            raise DistillError(
                f"--vectors and --width are for the students on word vectors ({', '.join(VECTOR_ARCHITECTURES)}), "
                f"not --arch {arch}"
            )
        return _MODELS[arch].format(exclusive=str(exclusive).lower())
    if vectors is None:
        raise DistillError(
            f"--arch {arch} starts from teacher-derived word vectors: make them with "
            "`spacy-distill word-vectors VECTORS --teacher TEACHER --data TRAIN.spacy` and pass --vectors VECTORS"
        )
    from .vectors.table import WordVectors

    table = WordVectors.from_disk(vectors)
    if width is None:
        if "cnn" in arch:
            width = min(DEFAULT_CNN_WIDTH, table.dims)
        elif arch in SUBWORD_ARCHITECTURES:
            width = min(DEFAULT_SUBWORD_WIDTH, table.dims)
        else:
            width = table.dims
    if not 1 <= width <= table.dims:
        raise DistillError(f"--width must be between 1 and the vectors' {table.dims} dims ({vectors}), got {width}")
    if arch in SUBWORD_ARCHITECTURES and table.subwords is None:
        raise DistillError(
            f"--arch {arch} falls back on character n-gram vectors for unseen words, but {vectors} holds none: "
            "remake it with `spacy-distill word-vectors ... --subwords 32768` (the default)"
        )
    return _MODELS[arch].format(exclusive=str(exclusive).lower(), width=int(width), attr=table.attr,
                                hidden_width=DEFAULT_HIDDEN_WIDTH)


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
            "(`spacy-distill word-vectors`) and pass --vectors: a static student starts from the "
            "teacher's word geometry instead of nothing"
            if n_docs < SMALL_DATA_DOCS_PER_LABEL * n_labels
            else "`spacy-distill word-vectors` + --vectors gives a student that starts from the teacher's words"
        )
        return "bow", (
            f"{size}, no teacher word vectors (--vectors): bag-of-words is the fastest student and as "
            f"accurate as spaCy's CNN in our benchmarks; {hint}"
        )
    from .vectors.table import WordVectors

    if WordVectors.from_disk(vectors).subwords is None:
        return "static", (
            f"{size}, teacher word vectors given (without subword vectors): the static-embedding student "
            "(mean+max pooled teacher vectors, trained further) runs at about bag-of-words speed; remake the "
            "vectors with `--subwords 32768` (the default) and --teacher-vocab for the static-subword "
            f"students, which also place words the training data never showed. {DEFAULT_VECTOR_REASON}"
        )
    return DEFAULT_VECTOR_ARCH, f"{size}, teacher word vectors with subword vectors given: {DEFAULT_VECTOR_REASON}"


def _add_hidden(
    config: Config, train: Union[str, Path], arch: str, level: str, *, loss: str, weight: float, projector: str
) -> Config:
    """Move the textcat's tok2vec into a shared `tok2vec` component that the textcat and a
    `distill_hidden` component listen to."""
    if level not in HIDDEN_LEVELS:
        raise DistillError(f"--hidden must be one of {HIDDEN_LEVELS}, got {level!r}")
    if loss not in HIDDEN_LOSSES:
        raise DistillError(f"--hidden-loss must be one of {HIDDEN_LOSSES}, got {loss!r}")
    if projector not in HIDDEN_PROJECTORS:
        raise DistillError(f"--hidden-projector must be one of {HIDDEN_PROJECTORS}, got {projector!r}")
    if arch == "bow":
        raise DistillError(
            "--hidden needs a student with a tok2vec to teach, but --arch bow has none (its "
            "features are hashed n-grams): use --arch cnn, ensemble or one of the static students"
        )
    width = _stored_hidden_width(train, level)
    textcat_model = config["components"]["textcat"]["model"]
    tok2vec = dict(textcat_model["tok2vec"])
    tok2vec_width = tok2vec["width"] if "width" in tok2vec else tok2vec["encode"]["width"]
    listener = {"@architectures": "spacy.Tok2VecListener.v1", "width": tok2vec_width, "upstream": "tok2vec"}
    textcat_model["tok2vec"] = dict(listener)
    config["components"]["tok2vec"] = {"factory": "tok2vec", "model": tok2vec}
    config["components"]["distill_hidden"] = {
        "factory": "distill_hidden",
        "allow_missing": False,
        "model": {
            "@architectures": "spacy-distill.HiddenProjector.v1",
            "nO": width,
            "level": level,
            "kind": projector,
            "nP": 3,
            "tok2vec": dict(listener),
        },
        "loss": {"@losses": "spacy-distill.HiddenStateLoss.v1", "kind": loss, "weight": float(weight)},
    }
    config["nlp"]["pipeline"] = ["tok2vec", "textcat", "distill_hidden"]
    return config


def _stored_hidden_width(train: Union[str, Path], level: str) -> int:
    """The width of the hidden states stored in the first doc of the training file."""
    from .hidden.storage import decode_hidden
    from .targets import USER_DATA_KEY, read_targets

    for index, doc in enumerate(read_targets(train)):
        hidden = (doc.user_data.get(USER_DATA_KEY) or {}).get("hidden")
        where = f"{train}: doc {index}"
        if hidden is None:
            raise DistillError(
                f"{where}: field 'hidden': missing; --hidden {level} needs hidden states in the "
                f"training data: annotate it with `spacy-distill annotate --hidden {level}`"
            )
        stored = decode_hidden(hidden, where, n_tokens=len(doc))
        if (stored.doc if level == "doc" else stored.tokens) is None:
            raise DistillError(
                f"{where}: field 'hidden': holds no {level}-level states; annotate with "
                f"--hidden {level} (or both)"
            )
        return stored.width
    raise DistillError(f"{train}: holds no docs")


def _quote(path: Union[str, Path]) -> str:
    return '"' + str(path).replace("\\", "/").replace('"', '\\"') + '"'


def _json_list(items) -> str:
    import json

    return json.dumps(list(items))
