"""forward_logits must agree with the model's own output, and its backward pass must give the
exact gradient for every output-layer convention (Softmax takes d(logits); softmax_activation
and Logistic take d(probabilities))."""

import numpy
import pytest
import spacy
from spacy.util import registry
from thinc.api import Config, Model, fix_random_seed

from spacy_distill.errors import UnsupportedModelError
from spacy_distill.ml.logits import forward_logits, has_readable_logits

TOK2VEC = """
[model.tok2vec]
@architectures = "spacy.HashEmbedCNN.v2"
pretrained_vectors = null
width = 8
depth = 1
embed_size = 50
window_size = 1
maxout_pieces = 2
subword_features = false
"""

ARCHITECTURES = {
    "bow": """
[model]
@architectures = "spacy.TextCatBOW.v3"
exclusive_classes = {exclusive}
ngram_size = 1
no_output_layer = false
length = 1024
""",
    "reduce": """
[model]
@architectures = "spacy.TextCatReduce.v1"
exclusive_classes = {exclusive}
use_reduce_first = true
use_reduce_last = false
use_reduce_max = true
use_reduce_mean = true
"""
    + TOK2VEC,
    "cnn": """
[model]
@architectures = "spacy.TextCatCNN.v2"
exclusive_classes = {exclusive}
"""
    + TOK2VEC,
    "ensemble": """
[model]
@architectures = "spacy.TextCatEnsemble.v2"

[model.linear_model]
@architectures = "spacy.TextCatBOW.v3"
exclusive_classes = {exclusive}
ngram_size = 1
no_output_layer = false
length = 1024
"""
    + TOK2VEC,
    "attention": """
[model]
@architectures = "spacy.TextCatParametricAttention.v1"
exclusive_classes = {exclusive}
"""
    + TOK2VEC,
}

TEXTS = ["free cash now", "see you soon", "win a prize", "lunch at noon ok"]


def build(arch: str, exclusive: bool, n_labels: int = 3) -> Model:
    # The same initial weights whatever ran before in this process (a gradient check can land
    # where finite differences cross a kink, e.g. a ReLU turning on, for some draws only).
    fix_random_seed(0)
    config = Config().from_str(ARCHITECTURES[arch].format(exclusive=str(exclusive).lower()))
    model = registry.resolve(config)["model"]
    nlp = spacy.blank("en")
    docs = [nlp.make_doc(text) for text in TEXTS]
    model.initialize(X=docs, Y=numpy.zeros((len(docs), n_labels), dtype="f"))
    # Spread the weights so that gradients are not all at a symmetric point.
    rng = numpy.random.default_rng(0)
    for node in model.walk():
        for name in node.param_names:
            if node.has_param(name):
                param = node.get_param(name)
                node.set_param(
                    name, param + rng.normal(scale=0.3, size=param.shape).astype(param.dtype)
                )
    return model, docs


def _activate(logits, exclusive):
    if exclusive:
        e = numpy.exp(logits - logits.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)
    return 1 / (1 + numpy.exp(-logits))


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
@pytest.mark.parametrize("exclusive", [True, False])
def test_logits_reproduce_the_model_output(arch, exclusive):
    model, docs = build(arch, exclusive)
    assert has_readable_logits(model)
    logits, _ = forward_logits(model, docs, is_train=False)
    numpy.testing.assert_allclose(_activate(logits, exclusive), model.predict(docs), atol=1e-5)


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
@pytest.mark.parametrize("exclusive", [True, False])
def test_backprop_gives_the_exact_parameter_gradient(arch, exclusive):
    """d/dW of sum(C * logits) via forward_logits' backprop equals finite differences."""
    model, docs = build(arch, exclusive)
    coefficients = numpy.random.default_rng(3).normal(size=(len(docs), 3)).astype("f")

    def objective() -> float:
        logits, _ = forward_logits(model, docs, is_train=False)
        return float((coefficients.astype("float64") * logits).sum())

    for node in model.walk():
        for name in node.param_names:
            if node.has_grad(name):
                node.set_grad(name, numpy.zeros_like(node.get_grad(name)))
    _, backprop = forward_logits(model, docs, is_train=True)
    backprop(coefficients)
    # The final affine layer's weights: where the output-layer conventions differ.
    output = model.get_ref("output_layer") if model.has_ref("output_layer") else None
    nodes = [node for node in model.walk() if "W" in node.param_names and node.has_param("W")]
    node = output if output is not None and "W" in output.param_names else nodes[-1]
    W = node.get_param("W").copy()
    analytic = node.get_grad("W")
    eps = 1e-2
    # The entries with the largest gradients (SparseLinear's hashed table is mostly untouched).
    flat = numpy.argsort(-numpy.abs(analytic).ravel())[:6]
    assert numpy.abs(analytic).max() > 1e-3
    for index in (numpy.unravel_index(i, W.shape) for i in flat):
        for sign in (1, -1):
            shifted = W.copy()
            shifted[index] += sign * eps
            node.set_param("W", shifted)
            if sign == 1:
                up = objective()
            else:
                down = objective()
        node.set_param("W", W)
        numeric = (up - down) / (2 * eps)
        assert analytic[index] == pytest.approx(numeric, rel=2e-2, abs=2e-3), (arch, index)


def test_model_without_output_layer_is_rejected():
    config = Config().from_str(
        ARCHITECTURES["bow"]
        .format(exclusive="true")
        .replace("no_output_layer = false", "no_output_layer = true")
    )
    model = registry.resolve(config)["model"]
    assert not has_readable_logits(model)
    nlp = spacy.blank("en")
    docs = [nlp.make_doc(t) for t in TEXTS]
    model.initialize(X=docs, Y=numpy.zeros((len(docs), 2), dtype="f"))
    with pytest.raises(UnsupportedModelError, match="no_output_layer"):
        forward_logits(model, docs, is_train=False)
