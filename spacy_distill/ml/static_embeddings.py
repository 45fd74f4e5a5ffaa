"""A trainable word-embedding table, initialised from teacher-derived word vectors.

The layer maps each token to its word's row (keyed by the lowercase form, norm or orth, as the
vectors were), or to a shared unknown-word row, and returns one (n_tokens, width) array per doc:
the shape of a `tok2vec`, so it serves a `TextCatReduce` (mean/max pooling + output layer), a
`TextCatEnsemble`, spaCy's `Tok2Vec` (as the embedding under a CNN encoder) or a shared `tok2vec`
component that `distill_hidden` also listens to.

Why its own layer rather than spaCy's `StaticVectors`: those vectors are frozen (only a projection
learns), while here the table itself keeps learning from the soft labels and the teacher's hidden
states. The words' keys and the table live in the model's weights (`attrs["keys"]` and param "E"),
copied in at `initialize` from the folder that `spacy-distill word-vectors` wrote; a trained or
exported student needs neither that folder, nor the teacher, nor torch.
"""
from typing import List, Optional, Tuple

import numpy
from spacy.attrs import IDS
from spacy.strings import get_string_id
from spacy.tokens import Doc
from spacy.util import registry
from thinc.api import Model
from thinc.types import Floats2d

from ..errors import DistillError
from ..vectors.vocabulary import WORD_ATTRS

ARCHITECTURE = "spacy-distill.StaticEmbeddings.v1"


@registry.architectures(ARCHITECTURE)
def build_static_embeddings(width: int, vectors: Optional[str], attr: str = "lower") -> Model[List[Doc], List[Floats2d]]:
    """A trainable embedding table over the training vocabulary, initialised from word vectors.

    width (int): the output width: the first `width` (PCA-ordered) dimensions of the vectors.
    vectors (Optional[str]): the folder of `spacy-distill word-vectors`, read at initialisation
        only (a trained pipeline loads without it).
    attr (str): how tokens are keyed ("lower", "norm" or "orth"); must match the vectors.
    RETURNS (Model[List[Doc], List[Floats2d]]): one (n_tokens, width) array per doc.
    """
    if attr not in WORD_ATTRS:
        raise DistillError(f"[{ARCHITECTURE}] attr must be one of {tuple(WORD_ATTRS)}, got {attr!r}")
    if not isinstance(width, int) or width < 1:
        raise DistillError(f"[{ARCHITECTURE}] width must be a positive integer, got {width!r}")
    return Model(
        "static_embeddings",
        forward,
        init=init,
        dims={"nO": width, "nV": None},
        params={"E": None},
        # spaCy sets "dropout_rate" from [training] dropout on every layer that has it.
        attrs={"keys": None, "vectors": None if vectors is None else str(vectors), "attr": attr, "dropout_rate": 0.0},
    )


def init(model: Model, X=None, Y=None) -> Model:
    from ..vectors.table import WordVectors

    path = model.attrs["vectors"]
    if path is None:
        raise DistillError(
            f"[{ARCHITECTURE}] needs `vectors`, the folder that `spacy-distill word-vectors` wrote "
            "(set it in the config, e.g. [paths] word_vectors)"
        )
    table = WordVectors.from_disk(path)
    width = model.get_dim("nO")
    if table.attr != model.attrs["attr"]:
        raise DistillError(
            f"{path}: the vectors are keyed by {table.attr!r} but [{ARCHITECTURE}] reads {model.attrs['attr']!r}"
        )
    if width > table.dims:
        raise DistillError(
            f"{path}: {table.dims}-dimensional vectors cannot fill width {width}; make them with "
            f"--dims {width} or more, or lower the width"
        )
    keys = numpy.asarray([get_string_id(word) for word in table.words], dtype="uint64")
    order = numpy.argsort(keys, kind="stable")
    # Row 0 is the unknown-word row, learnt from zero.
    E = numpy.zeros((len(keys) + 1, width), dtype="float32")
    E[1:] = table.vectors[order, :width]
    model.attrs["keys"] = keys[order]
    model.set_dim("nV", len(keys) + 1)
    model.set_param("E", model.ops.asarray2f(E))
    return model


def _rows(model: Model, docs: List[Doc]) -> Tuple[numpy.ndarray, List[int]]:
    """Each token's row in E (0: unknown word), for the whole batch, and the docs' lengths."""
    keys = model.attrs["keys"]
    attr = IDS[WORD_ATTRS[model.attrs["attr"]][0]]
    lengths = [len(doc) for doc in docs]
    if not sum(lengths):
        return numpy.zeros((0,), dtype="int64"), lengths
    tokens = numpy.concatenate([doc.to_array(attr) for doc in docs if len(doc)]).astype("uint64")
    position = numpy.searchsorted(keys, tokens)
    position[position == len(keys)] = 0
    rows = numpy.where(keys[position] == tokens, position + 1, 0)
    return rows, lengths


def forward(model: Model, docs: List[Doc], is_train: bool):
    E = model.get_param("E")
    rows, lengths = _rows(model, docs)
    rows_xp = model.ops.asarray1i(rows)
    vectors = E[rows_xp]
    # Word dropout (whole tokens, rescaled as inverted dropout): a table with a free row per word
    # overfits a few thousand texts quickly, and pooled students are known to gain from it.
    rate = float(model.attrs.get("dropout_rate") or 0.0) if is_train else 0.0
    mask = None
    if rate > 0 and len(rows):
        keep = (numpy.random.random_sample(len(rows)) >= rate).astype("float32") / (1.0 - rate)
        mask = model.ops.asarray2f(keep.reshape(-1, 1))
        vectors = vectors * mask
    outputs = model.ops.unflatten(vectors, model.ops.asarray1i(lengths)) if docs else []

    def backprop(d_outputs: List[Floats2d]) -> List[Doc]:
        if len(rows):
            d_vectors = model.ops.flatten(d_outputs)
            if mask is not None:
                d_vectors = d_vectors * mask
            dE = model.ops.alloc2f(*E.shape)
            model.ops.scatter_add(dE, rows_xp, d_vectors)
            model.inc_grad("E", dE)
        return []

    return outputs, backprop
