"""Pooled text classifier with an optional hidden layer: spaCy's `TextCatReduce` plus capacity.

`spacy.TextCatReduce.v1` maps the pooled token vectors straight to the classes: a linear model
of the mean and max of the word vectors. Interactions ("not" with "good", a positive word in a
complaint) need a non-linearity between pooling and the output. This architecture is the same
chain (tok2vec >> list2ragged >> concatenated reductions) with, when `hidden_width` > 0, one
Maxout layer (layer-normalised, with dropout) before the same output layer: thinc's `Softmax`
(exclusive classes) or `Linear` >> `Logistic` (multi-label), resizable, with the same refs and
attrs as spaCy's. So `ml.logits` reads its logits as it reads TextCatReduce's, spaCy's `textcat`
components use it unchanged, and `spacy-distill export` keeps it as is.
"""

from functools import partial
from typing import List, Optional

from spacy.ml.models.textcat import resize_and_set_ref, resize_linear_weighted
from spacy.tokens import Doc
from spacy.util import registry
from thinc.api import (
    Linear,
    Logistic,
    Maxout,
    Model,
    Softmax,
    chain,
    concatenate,
    list2ragged,
    reduce_max,
    reduce_mean,
    resizable,
)
from thinc.types import Floats2d

from ..errors import DistillError

ARCHITECTURE = "spacy-distill.TextCatPooled.v1"
NEG_VALUE = -5000


@registry.architectures(ARCHITECTURE)
def build_pooled_classifier(
    tok2vec: Model,
    exclusive_classes: bool,
    use_reduce_mean: bool = True,
    use_reduce_max: bool = True,
    hidden_width: int = 0,
    hidden_dropout: float = 0.1,
    maxout_pieces: int = 2,
    nO: Optional[int] = None,
) -> Model[List[Doc], Floats2d]:
    """Mean/max pooling, an optional Maxout hidden layer, and spaCy's output layer.

    tok2vec (Model): the token vectors to pool (e.g. `spacy-distill.StaticEmbeddings.v2`).
    exclusive_classes (bool): softmax over the classes (True) or one sigmoid each.
    use_reduce_mean, use_reduce_max (bool): the poolings, concatenated.
    hidden_width (int): width of the hidden layer (0: none, i.e. spacy.TextCatReduce.v1).
    hidden_dropout (float): dropout on the hidden layer's output.
    maxout_pieces (int): Maxout pieces of the hidden layer.
    nO (Optional[int]): the number of classes (set from the labels at initialisation).
    RETURNS (Model[List[Doc], Floats2d]): class probabilities per doc.
    """
    reductions = [
        r for use, r in ((use_reduce_mean, reduce_mean), (use_reduce_max, reduce_max)) if use
    ]
    if not reductions:
        raise DistillError(f"[{ARCHITECTURE}] needs use_reduce_mean or use_reduce_max")
    if not isinstance(hidden_width, int) or hidden_width < 0:
        raise DistillError(
            f"[{ARCHITECTURE}] hidden_width must be an integer >= 0, got {hidden_width!r}"
        )
    nO_tok2vec = tok2vec.maybe_get_dim("nO")
    nI = nO_tok2vec * len(reductions) if nO_tok2vec is not None else None
    layers = [tok2vec, list2ragged(), concatenate(*(r() for r in reductions))]
    if hidden_width:
        layers.append(
            Maxout(nO=hidden_width, nI=nI, nP=maxout_pieces, dropout=hidden_dropout, normalize=True)
        )
        nI = hidden_width
    fill_defaults = {"b": 0, "W": 0}
    if exclusive_classes:
        output_layer = Softmax(nO=nO, nI=nI)
        fill_defaults["b"] = NEG_VALUE
        resizable_layer: Model = resizable(
            output_layer, resize_layer=partial(resize_linear_weighted, fill_defaults=fill_defaults)
        )
        model = chain(*layers, resizable_layer)
    else:
        output_layer = Linear(nO=nO, nI=nI)
        resizable_layer = resizable(
            output_layer, resize_layer=partial(resize_linear_weighted, fill_defaults=fill_defaults)
        )
        model = chain(*layers, resizable_layer, Logistic())
    model.set_ref("output_layer", output_layer)
    model.attrs["resize_output"] = partial(resize_and_set_ref, resizable_layer=resizable_layer)
    model.set_ref("tok2vec", tok2vec)
    if nO is not None:
        model.set_dim("nO", nO)
    model.attrs["multi_label"] = not exclusive_classes
    return model
