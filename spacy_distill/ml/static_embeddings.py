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

from typing import Dict, List, Optional, Tuple

import numpy
from spacy.attrs import IDS
from spacy.strings import get_string_id
from spacy.tokens import Doc
from spacy.util import registry
from thinc.api import Model
from thinc.types import Floats2d

from ..errors import DistillError
from ..vectors.vocabulary import WORD_ATTRS
from . import pooled_classifier  # noqa: F401  (registers spacy-distill.TextCatPooled.v1, the static students' head)

ARCHITECTURE = "spacy-distill.StaticEmbeddings.v1"


def _check_arguments(architecture: str, width: int, attr: str) -> None:
    if attr not in WORD_ATTRS:
        raise DistillError(
            f"[{architecture}] attr must be one of {tuple(WORD_ATTRS)}, got {attr!r}"
        )
    if not isinstance(width, int) or width < 1:
        raise DistillError(f"[{architecture}] width must be a positive integer, got {width!r}")


@registry.architectures(ARCHITECTURE)
def build_static_embeddings(
    width: int, vectors: Optional[str], attr: str = "lower"
) -> Model[List[Doc], List[Floats2d]]:
    """A trainable embedding table over the training vocabulary, initialised from word vectors.

    width (int): the output width: the first `width` (PCA-ordered) dimensions of the vectors.
    vectors (Optional[str]): the folder of `spacy-distill word-vectors`, read at initialisation
        only (a trained pipeline loads without it).
    attr (str): how tokens are keyed ("lower", "norm" or "orth"); must match the vectors.
    RETURNS (Model[List[Doc], List[Floats2d]]): one (n_tokens, width) array per doc.
    """
    _check_arguments(ARCHITECTURE, width, attr)
    return Model(
        "static_embeddings",
        forward,
        init=init,
        dims={"nO": width, "nV": None},
        params={"E": None},
        # spaCy sets "dropout_rate" from [training] dropout on every layer that has it.
        attrs={
            "keys": None,
            "vectors": None if vectors is None else str(vectors),
            "attr": attr,
            "dropout_rate": 0.0,
        },
    )


def _load_word_table(model: Model, architecture: str):
    """The vectors folder of `model.attrs["vectors"]`, checked against the layer, and the E
    table it starts from: row 0 the unknown word (learnt from zero), then the words sorted by
    key. RETURNS (table, sorted keys, order of the table's words, E)."""
    from ..vectors.table import WordVectors

    path = model.attrs["vectors"]
    if path is None:
        raise DistillError(
            f"[{architecture}] needs `vectors`, the folder that `spacy-distill word-vectors` wrote "
            "(set it in the config, e.g. [paths] word_vectors)"
        )
    table = WordVectors.from_disk(path)
    width = model.get_dim("nO")
    if table.attr != model.attrs["attr"]:
        raise DistillError(
            f"{path}: the vectors are keyed by {table.attr!r} but [{architecture}] reads {model.attrs['attr']!r}"
        )
    if width > table.dims:
        raise DistillError(
            f"{path}: {table.dims}-dimensional vectors cannot fill width {width}; make them with "
            f"--dims {width} or more, or lower the width"
        )
    keys = numpy.asarray([get_string_id(word) for word in table.words], dtype="uint64")
    order = numpy.argsort(keys, kind="stable")
    E = numpy.zeros((len(keys) + 1, width), dtype="float32")
    E[1:] = table.vectors[order, :width]
    return table, keys[order], order, E


def init(model: Model, X=None, Y=None) -> Model:
    _, keys, _, E = _load_word_table(model, ARCHITECTURE)
    model.attrs["keys"] = keys
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


# The layers whose tables `store_in_half_precision` halves.
STATIC_LAYERS = ("static_embeddings", "static_subword_embeddings")
_TABLES = ("E", "N")


def store_in_half_precision(model: Model) -> int:
    """Store the word and n-gram tables of every static embedding layer under `model` as float16.

    The tables are nearly all of a static student's size: halving them halves the package and
    the memory it loads into, and moves its probabilities by about 1e-3 (`export` checks the
    bound). Inference gathers rows and computes in float32; a training pass turns the tables
    back into float32 first, so an exported student can still be trained further.

    model (Model): a model tree (e.g. a textcat's model).
    RETURNS (int): the bytes saved (0 if there is no static layer, or it is halved already).
    """
    saved = 0
    for node in model.walk():
        if node.name not in STATIC_LAYERS:
            continue
        for name in _TABLES:
            if node.has_param(name) and node.get_param(name) is not None:
                table = node.get_param(name)
                if table.dtype == numpy.float16:
                    continue
                half = node.ops.xp.ascontiguousarray(table.astype("float16"))
                saved += table.nbytes - half.nbytes
                node.set_param(name, half)
        _ComposedCache.drop(node)
    return saved


def _full_precision_for_training(model: Model) -> None:
    """Tables stored in half precision become float32 again before they learn."""
    for name in _TABLES:
        if (
            model.has_param(name)
            and model.get_param(name) is not None
            and model.get_param(name).dtype != numpy.float32
        ):
            model.set_param(name, model.ops.asarray2f(model.get_param(name).astype("float32")))


def forward(model: Model, docs: List[Doc], is_train: bool):
    if is_train:
        _full_precision_for_training(model)
    E = model.get_param("E")
    rows, lengths = _rows(model, docs)
    rows_xp = model.ops.asarray1i(rows)
    vectors = model.ops.asarray2f(E[rows_xp])  # float32, also from a half-precision table
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


ARCHITECTURE_V2 = "spacy-distill.StaticEmbeddings.v2"


@registry.architectures(ARCHITECTURE_V2)
def build_static_embeddings_v2(
    width: int, vectors: Optional[str], attr: str = "lower", subwords: bool = True
) -> Model[List[Doc], List[Floats2d]]:
    """A trainable word table plus hashed character n-gram vectors, so that no word is unknown.

    A token's vector is its word's row (zero for a word outside the vocabulary) plus the mean of
    its character n-grams' vectors, as in fastText. Both tables start from the vectors folder:
    the n-gram vectors as `word-vectors` fitted them to the teacher's word vectors, each word's
    row as the rest (its teacher vector minus its n-grams' mean), so a known word starts exactly
    at its teacher vector and an unseen one at its spellings' best guess. Both keep learning;
    the n-gram vectors learn from every training token, which is what an unseen word at test
    time is scored with. Bucket ids are computed from the token's keyed string with murmurhash:
    nothing but spaCy is needed at run time.

    width (int): the output width: the first `width` (PCA-ordered) dimensions of the vectors.
    vectors (Optional[str]): the folder of `spacy-distill word-vectors` (with subword vectors,
        i.e. made with `--subwords N`), read at initialisation only.
    attr (str): how tokens are keyed ("lower", "norm" or "orth"); must match the vectors.
    subwords (bool): use the n-gram vectors (False: the word table only, as v1 but for the
        larger vocabulary a v2 folder may hold).
    RETURNS (Model[List[Doc], List[Floats2d]]): one (n_tokens, width) array per doc.
    """
    _check_arguments(ARCHITECTURE_V2, width, attr)
    return Model(
        "static_subword_embeddings",
        forward_v2,
        init=init_v2,
        dims={"nO": width, "nV": None, "nB": None},
        params={"E": None, "N": None},
        attrs={
            "keys": None,
            "vectors": None if vectors is None else str(vectors),
            "attr": attr,
            "subwords": bool(subwords),
            "min_n": None,
            "max_n": None,
            "dropout_rate": 0.0,
        },
    )


def init_v2(model: Model, X=None, Y=None) -> Model:
    from ..vectors.subwords import ragged_buckets, segment_mean

    table, sorted_keys, order, E = _load_word_table(model, ARCHITECTURE_V2)
    path, width = model.attrs["vectors"], model.get_dim("nO")
    if model.attrs["subwords"]:
        if table.subwords is None:
            raise DistillError(
                f"{path}: no subword vectors in this folder, which [{ARCHITECTURE_V2}] falls back on for "
                "unseen words; remake it with `spacy-distill word-vectors ... --subwords 32768`, or set "
                "subwords = false"
            )
        settings = table.meta["subwords"]
        N = numpy.ascontiguousarray(table.subwords[:, :width])
        flat, lengths = ragged_buckets(
            table.words, settings["buckets"], settings["min_n"], settings["max_n"]
        )
        # Known words start at their teacher vector exactly: the row holds what the n-grams miss.
        E[1:] -= segment_mean(N, flat, lengths)[order]
        model.attrs["min_n"], model.attrs["max_n"] = int(settings["min_n"]), int(settings["max_n"])
    else:
        N = numpy.zeros((1, width), dtype="float32")
    model.attrs["keys"] = sorted_keys
    model.set_dim("nV", len(sorted_keys) + 1)
    model.set_dim("nB", int(N.shape[0]))
    model.set_param("E", model.ops.asarray2f(E))
    model.set_param("N", model.ops.asarray2f(N))
    return model


class _ComposedCache:
    """Each word's composed vector (its row + its n-grams' mean), per model, for inference.

    Valid while the model's E and N are the very arrays it was computed from (it holds them, so
    their ids cannot be reused): `use_params` and `from_bytes` swap in other arrays, and every
    in-place update (the optimizer's) follows a training forward pass, which drops the cache.
    """

    MAX_MODELS = 8
    MAX_WORDS = 1_000_000
    _by_model: Dict[int, "_ComposedCache"] = {}

    def __init__(self, E, N):
        self.E, self.N = E, N
        self.index: Dict[int, int] = {}
        self.table = numpy.zeros((1024, E.shape[1]), dtype="float32")

    @classmethod
    def get(cls, model: Model, E, N) -> "_ComposedCache":
        cache = cls._by_model.get(model.id)
        if (
            cache is None
            or cache.E is not E
            or cache.N is not N
            or len(cache.index) > cls.MAX_WORDS
        ):
            if cache is None and len(cls._by_model) >= cls.MAX_MODELS:
                cls._by_model.pop(next(iter(cls._by_model)))
            cache = cls._by_model[model.id] = cls(E, N)
        return cache

    @classmethod
    def drop(cls, model: Model) -> None:
        cls._by_model.pop(model.id, None)

    def rows(self, keys: numpy.ndarray, compose) -> numpy.ndarray:
        """Rows of `table` for the keys, composing (and storing) the vectors of new ones."""
        get = self.index.get
        found = numpy.fromiter((get(k, -1) for k in keys.tolist()), dtype="int64", count=len(keys))
        missing = numpy.flatnonzero(found < 0)
        if len(missing):
            vectors = compose(missing)
            start = len(self.index)
            if start + len(missing) > len(self.table):
                grown = numpy.zeros(
                    (max(2 * len(self.table), start + len(missing)), self.table.shape[1]), "float32"
                )
                grown[:start] = self.table[:start]
                self.table = grown
            self.table[start : start + len(missing)] = vectors
            for offset, key in enumerate(keys[missing].tolist()):
                self.index[key] = start + offset
            found[missing] = numpy.arange(start, start + len(missing))
        return found


def forward_v2(model: Model, docs: List[Doc], is_train: bool):
    from ..vectors.subwords import BucketCache, segment_mean, segment_scatter

    if is_train:
        _full_precision_for_training(model)
    E = model.get_param("E")
    N = model.get_param("N")
    width = E.shape[1]
    lengths = [len(doc) for doc in docs]
    n_tokens = sum(lengths)
    if not n_tokens:
        return [model.ops.alloc2f(0, width) for _ in docs], lambda d_outputs: []
    keys = model.attrs["keys"]
    use_subwords = bool(model.attrs["subwords"])
    attr = IDS[WORD_ATTRS[model.attrs["attr"]][0]]
    tokens = numpy.concatenate([doc.to_array(attr) for doc in docs if len(doc)]).astype("uint64")
    # Each distinct word once (its row, its n-grams' mean); the tokens then gather.
    uniq, inverse = numpy.unique(tokens, return_inverse=True)
    inverse = inverse.reshape(-1)
    strings = next(doc for doc in docs if len(doc)).vocab.strings
    E_np, N_np = model.ops.to_numpy(E), model.ops.to_numpy(N)

    def word_rows(which: numpy.ndarray) -> numpy.ndarray:
        position = numpy.searchsorted(keys, uniq[which])
        position[position == len(keys)] = 0
        return numpy.where(keys[position] == uniq[which], position + 1, 0)

    def buckets(which: numpy.ndarray):
        parts = BucketCache.lookup(
            uniq[which].tolist(),
            strings,
            int(N.shape[0]),
            model.attrs["min_n"],
            model.attrs["max_n"],
        )
        return numpy.concatenate(parts), numpy.asarray([len(p) for p in parts], dtype="int64")

    def compose(which: numpy.ndarray) -> numpy.ndarray:
        vectors = E_np[word_rows(which)].astype("float32")  # rows of a half-precision table too
        if use_subwords:
            vectors = vectors + segment_mean(N_np, *buckets(which))
        return vectors

    if not is_train:
        # Inference: a word's vector is fixed, so compose it once per process and gather.
        cache = _ComposedCache.get(model, E, N)
        found = cache.rows(uniq, compose)  # may grow (replace) cache.table: read it after
        vectors = cache.table[found[inverse]]
        return model.ops.unflatten(
            model.ops.asarray2f(vectors), model.ops.asarray1i(lengths)
        ), lambda d: []
    _ComposedCache.drop(model)  # the parameters are about to change
    everything = numpy.arange(len(uniq))
    rows = word_rows(everything)
    word_vectors = E_np[rows]
    if use_subwords:
        flat, sub_lengths = buckets(everything)
        word_vectors = word_vectors + segment_mean(N_np, flat, sub_lengths)
    vectors = word_vectors[inverse]
    rate = float(model.attrs.get("dropout_rate") or 0.0)
    keep = None
    if rate > 0:
        keep = (
            (numpy.random.random_sample(n_tokens) >= rate).astype("float32") / (1.0 - rate)
        ).reshape(-1, 1)
        vectors = vectors * keep
    outputs = model.ops.unflatten(model.ops.asarray2f(vectors), model.ops.asarray1i(lengths))

    def backprop(d_outputs: List[Floats2d]) -> List[Doc]:
        d_vectors = model.ops.to_numpy(model.ops.flatten(d_outputs))
        if keep is not None:
            d_vectors = d_vectors * keep
        d_words = numpy.zeros((len(uniq), width), dtype="float32")
        numpy.add.at(d_words, inverse, d_vectors)
        dE = numpy.zeros(E.shape, dtype="float32")
        dE[rows] += d_words  # rows are distinct but for the unknown row 0
        if (rows == 0).sum() > 1:
            dE[0] = d_words[rows == 0].sum(axis=0)
        model.inc_grad("E", model.ops.asarray2f(dE))
        if use_subwords:
            model.inc_grad(
                "N",
                model.ops.asarray2f(segment_scatter(d_words, flat, sub_lengths, int(N.shape[0]))),
            )
        return []

    return outputs, backprop
