"""The sections of a student's `spacy train` config, one builder per part: the textcat heads,
the embeddings and encoders under them, the hidden-state components and the training skeleton.
`spacy_distill.training.student_config` composes them per architecture; every builder returns a
plain dict that `thinc.api.Config` serialises, so no part is written twice."""

from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Union

Section = Dict[str, Any]

# The [paths] entry of the teacher-derived word vectors, referenced by every static embedding.
WORD_VECTORS_REF = "${paths.word_vectors}"
# The bag-of-words model's hashed n-gram table.
BOW_LENGTH = 262144
BOW_NGRAM_SIZE = 2

# Architecture -> (head, tok2vec): the head that scores the labels and the encoder under it
# (None: bag-of-words alone, no tok2vec). "hash-cnn" is spaCy's default CNN; "static" and
# "subword" are `spacy-distill.StaticEmbeddings` v1 and v2; "static-cnn" adds one narrow CNN
# layer over v1 (the context the static student lacks, "not good", at a fraction of the cost).
ARCHITECTURE_PARTS = {
    "bow": ("bow", None),
    "cnn": ("reduce", "hash-cnn"),
    "ensemble": ("ensemble", "hash-cnn"),
    "static": ("reduce", "static"),
    "static-cnn": ("reduce", "static-cnn"),
    "static-ensemble": ("ensemble", "static"),
    "static-cnn-ensemble": ("ensemble", "static-cnn"),
    "static-subword": ("reduce", "subword"),
    "static-subword-mlp": ("pooled", "subword"),
}


def bow_model(exclusive: bool) -> Section:
    """spaCy's bag-of-words textcat: hashed unigrams and bigrams."""
    return {
        "@architectures": "spacy.TextCatBOW.v3",
        "exclusive_classes": exclusive,
        "length": BOW_LENGTH,
        "ngram_size": BOW_NGRAM_SIZE,
        "no_output_layer": False,
    }


def reduce_model(exclusive: bool, tok2vec: Section) -> Section:
    """Mean + max pooling of the tok2vec's vectors, then the output layer."""
    return {
        "@architectures": "spacy.TextCatReduce.v1",
        "exclusive_classes": exclusive,
        "use_reduce_first": False,
        "use_reduce_last": False,
        "use_reduce_max": True,
        "use_reduce_mean": True,
        "tok2vec": tok2vec,
    }


def ensemble_model(exclusive: bool, tok2vec: Section) -> Section:
    """Bag-of-words beside a tok2vec model (spaCy's TextCatEnsemble.v2)."""
    return {
        "@architectures": "spacy.TextCatEnsemble.v2",
        "linear_model": bow_model(exclusive),
        "tok2vec": tok2vec,
    }


def pooled_model(exclusive: bool, tok2vec: Section, hidden_width: int) -> Section:
    """Mean + max pooling, one Maxout layer, the output layer: TextCatReduce with a hidden layer."""
    return {
        "@architectures": "spacy-distill.TextCatPooled.v1",
        "exclusive_classes": exclusive,
        "use_reduce_mean": True,
        "use_reduce_max": True,
        "hidden_width": int(hidden_width),
        "hidden_dropout": 0.1,
        "maxout_pieces": 2,
        "tok2vec": tok2vec,
    }


def hash_embed_cnn() -> Section:
    """spaCy's default CNN tok2vec (hashed word features, two window layers)."""
    return {
        "@architectures": "spacy.HashEmbedCNN.v2",
        "pretrained_vectors": None,
        "width": 64,
        "depth": 2,
        "embed_size": 2000,
        "window_size": 1,
        "maxout_pieces": 3,
        "subword_features": True,
    }


def static_embeddings(width: int, attr: str, *, subwords: bool = False) -> Section:
    """The teacher-derived word table (v1), or with its character n-gram fallback (v2)."""
    section = {
        "@architectures": f"spacy-distill.StaticEmbeddings.{'v2' if subwords else 'v1'}",
        "width": int(width),
        "vectors": WORD_VECTORS_REF,
        "attr": attr,
    }
    if subwords:
        section["subwords"] = True
    return section


def static_cnn(width: int, attr: str) -> Section:
    """One narrow window layer over the static embeddings."""
    return {
        "@architectures": "spacy.Tok2Vec.v2",
        "embed": static_embeddings(width, attr),
        "encode": {
            "@architectures": "spacy.MaxoutWindowEncoder.v2",
            "width": int(width),
            "depth": 1,
            "window_size": 1,
            "maxout_pieces": 3,
        },
    }


def textcat_model(
    arch: str,
    exclusive: bool,
    *,
    width: Optional[int] = None,
    attr: Optional[str] = None,
    hidden_width: int = 128,
) -> Section:
    """The model section of architecture `arch` (a key of ARCHITECTURE_PARTS); `width` and
    `attr` are the static embeddings' (unused by bow, cnn and ensemble)."""
    head, encoder = ARCHITECTURE_PARTS[arch]
    if head == "bow":
        return bow_model(exclusive)
    if encoder == "hash-cnn":
        tok2vec = hash_embed_cnn()
    elif encoder == "static-cnn":
        tok2vec = static_cnn(width, attr)
    else:
        tok2vec = static_embeddings(width, attr, subwords=encoder == "subword")
    if head == "reduce":
        return reduce_model(exclusive, tok2vec)
    if head == "ensemble":
        return ensemble_model(exclusive, tok2vec)
    return pooled_model(exclusive, tok2vec, hidden_width)


def soft_target_loss(
    temperature: float, alpha: float, trust: Optional[Dict[str, float]] = None
) -> Section:
    """SoftTargetLoss v1, or v2 with the teacher's trust per label."""
    section = {
        "@losses": f"spacy-distill.SoftTargetLoss.{'v1' if trust is None else 'v2'}",
        "temperature": float(temperature),
        "alpha": float(alpha),
        "normalize": True,
    }
    if trust is not None:
        section["label_trust"] = dict(trust)
    return section


def listener(width: int, upstream: str) -> Section:
    """A tok2vec listener on the shared component `upstream`."""
    return {"@architectures": "spacy.Tok2VecListener.v1", "width": width, "upstream": upstream}


def distill_hidden_component(
    tok2vec: Section, *, teacher_width: int, level: str, projector: str, loss: str, weight: float
) -> Section:
    """The training-only `distill_hidden` component: maps the student's tok2vec to the teacher's
    hidden states of width `teacher_width`."""
    return {
        "factory": "distill_hidden",
        "allow_missing": False,
        "model": {
            "@architectures": "spacy-distill.HiddenProjector.v1",
            "nO": teacher_width,
            "level": level,
            "kind": projector,
            "nP": 3,
            "tok2vec": tok2vec,
        },
        "loss": {
            "@losses": "spacy-distill.HiddenStateLoss.v1",
            "kind": loss,
            "weight": float(weight),
        },
    }


def config_path(path: Union[str, Path]) -> str:
    """A path as a config string: forward slashes, so a Windows path reads the same everywhere."""
    return str(path).replace("\\", "/")


def training_config(
    *,
    component: str,
    factory: str,
    model: Section,
    loss: Optional[Section],
    train: Union[str, Path],
    dev: Union[str, Path],
    labels: Sequence[str],
    lang: str,
    max_steps: int,
    require_gold: bool,
    score_weights: Dict[str, float],
    vectors: Optional[Union[str, Path]] = None,
) -> Section:
    """The whole config of a one-component pipeline: the textcat `component` made by `factory`
    with `model` (and `loss`, for the distilling factories), trained on target files."""
    paths = {"train": config_path(train), "dev": config_path(dev)}
    if vectors is not None:
        paths["word_vectors"] = config_path(vectors)
    textcat: Section = {"factory": factory}
    if loss is not None:
        textcat["loss"] = loss
    textcat["model"] = model
    reader = "spacy-distill.TargetCorpus.v1"
    return {
        "paths": paths,
        "system": {"seed": 0, "gpu_allocator": None},
        "nlp": {"lang": lang, "pipeline": [component], "batch_size": 1000},
        "components": {component: textcat},
        "corpora": {
            "train": {"@readers": reader, "path": "${paths.train}", "require_gold": require_gold},
            "dev": {"@readers": reader, "path": "${paths.dev}"},
        },
        "training": {
            "dropout": 0.1,
            "patience": 1600,
            "max_epochs": 0,
            "max_steps": int(max_steps),
            "eval_frequency": 200,
            # A bar between evaluations: a long run shows it is moving, not only a row per 200 steps.
            "logger": {"@loggers": "spacy.ConsoleLogger.v1", "progress_bar": True},
            "batcher": {
                "@batchers": "spacy.batch_by_words.v1",
                "discard_oversize": False,
                "tolerance": 0.2,
                "size": {
                    "@schedules": "compounding.v1",
                    "start": 100,
                    "stop": 1000,
                    "compound": 1.001,
                },
            },
            "optimizer": {"@optimizers": "Adam.v1", "learn_rate": 0.001},
            "score_weights": dict(score_weights),
        },
        "initialize": {"components": {component: {"labels": list(labels)}}},
    }
