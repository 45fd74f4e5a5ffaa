"""Read logits out of any spaCy text-classification model.

spaCy's textcat models end in a probability layer, and their output layers disagree on what
their backward pass expects: thinc's `Softmax` layer takes the gradient with respect to its
*logits* (it assumes a cross-entropy loss), while `softmax_activation` and `Logistic` take
the gradient with respect to their *probabilities* and apply the Jacobian. Temperature needs
logits, and an exact gradient needs to know which convention holds. So instead of taking
logs of clipped probabilities, we run the model up to its final activation:

- a chain: run every layer but the last, then recurse into the last;
- `with_cpu`, `resizable`: recurse into the wrapped layer;
- `Softmax` (TextCatReduce/CNN, Ensemble, ParametricAttention, exclusive): its affine output
  is the logits, and its own backward pass already takes d(logits);
- `softmax_activation`, `Logistic`, `sigmoid_activation` (BOW, and every multi-label model):
  their input is the logits; the activation is skipped.
"""
from typing import Any, Callable, Tuple

from thinc.layers.chain import forward as chain_forward
from thinc.layers.logistic import forward as logistic_forward
from thinc.layers.resizable import forward as resizable_forward
from thinc.layers.sigmoid_activation import forward as sigmoid_activation_forward
from thinc.layers.softmax import forward as softmax_forward
from thinc.layers.softmax_activation import forward as softmax_activation_forward
from thinc.layers.with_cpu import _to_cpu, _to_device
from thinc.layers.with_cpu import forward as with_cpu_forward
from thinc.model import Model
from thinc.types import Floats2d

from ..errors import UnsupportedModelError

_ACTIVATIONS = (softmax_activation_forward, logistic_forward, sigmoid_activation_forward)

LogitsBackprop = Callable[[Floats2d], Any]


def forward_logits(model: Model, X: Any, is_train: bool) -> Tuple[Floats2d, LogitsBackprop]:
    """Run a textcat model and return its logits and a callback that takes d(logits).

    model (Model): a text-classification model ending in a softmax or sigmoid.
    X (Any): the model's input (a list of docs for a full textcat model).
    is_train (bool): whether to run in training mode (dropout on).
    RETURNS (Tuple[Floats2d, Callable]): logits with softmax(logits) (exclusive) or
        sigmoid(logits) (multi-label) equal to the model's output, and the backprop callback.
    """
    func = model._func
    if func is chain_forward:
        backprops = []
        for layer in model.layers[:-1]:
            X, backprop = layer(X, is_train=is_train)
            backprops.append(backprop)
        logits, backprop_last = forward_logits(model.layers[-1], X, is_train)

        def backprop_chain(d_logits: Floats2d) -> Any:
            d_X = backprop_last(d_logits)
            for backprop in reversed(backprops):
                d_X = backprop(d_X)
            return d_X

        return logits, backprop_chain
    if func is with_cpu_forward:
        inner = model.layers[0]
        logits, backprop_inner = forward_logits(inner, _to_cpu(X), is_train)

        def backprop_with_cpu(d_logits: Floats2d) -> Any:
            return backprop_inner(_to_cpu(d_logits))

        return _to_device(model.ops, logits), backprop_with_cpu
    if func is resizable_forward:
        return forward_logits(model.layers[0], X, is_train)
    if func is softmax_forward:
        _, backprop_softmax = model(X, is_train=True)
        temperature = model.attrs.get("softmax_temperature", 1.0)
        logits = model.ops.affine(X, model.get_param("W"), model.get_param("b"))
        if temperature != 1.0:
            logits = logits / temperature
        return logits, backprop_softmax
    if func in _ACTIVATIONS:
        return X, _identity
    raise UnsupportedModelError(
        f"Cannot read logits from a text-classification model ending in layer '{model.name}'. "
        "spacy-distill supports models whose output ends in thinc's Softmax, "
        "softmax_activation, Logistic or sigmoid_activation (every spaCy textcat architecture "
        "with its output layer: BOW, CNN/Reduce, Ensemble, ParametricAttention, LowData). "
        "For spacy.TextCatBOW, set no_output_layer = false."
    )


def has_readable_logits(model: Model) -> bool:
    """Whether `forward_logits` can split this model (without running it)."""
    func = model._func
    if func in (chain_forward, with_cpu_forward, resizable_forward):
        return bool(model.layers) and has_readable_logits(model.layers[-1])
    return func is softmax_forward or func in _ACTIVATIONS


def _identity(d_logits: Floats2d) -> Floats2d:
    return d_logits


_AFFINE_LAYERS = ("sparse_linear", "linear", "softmax")


def logit_layer(model: Model) -> Model:
    """The affine layer whose output is the model's logits (its `W` and `b` make them).

    model (Model): a text-classification model ending in a softmax or sigmoid.
    RETURNS (Model): thinc's `Softmax` (whose affine part gives the logits), or the
        `SparseLinear` / `Linear` layer under a final activation.
    """
    func = model._func
    if func is chain_forward and model.layers:
        last = model.layers[-1]
        if _is_activation(last) and len(model.layers) > 1:
            return _last_affine(model.layers[-2], model)
        return logit_layer(last)
    if func in (with_cpu_forward, resizable_forward):
        return logit_layer(model.layers[0])
    if func is softmax_forward:
        return model
    raise UnsupportedModelError(f"Cannot find the layer that makes the logits of '{model.name}'")


def _is_activation(layer: Model) -> bool:
    if layer._func in (with_cpu_forward, resizable_forward):
        return _is_activation(layer.layers[0])
    return layer._func in _ACTIVATIONS


def _last_affine(layer: Model, parent: Model) -> Model:
    if layer.name in _AFFINE_LAYERS and layer.has_param("W") and layer.has_param("b"):
        return layer
    if layer._func in (chain_forward, with_cpu_forward, resizable_forward) and layer.layers:
        return _last_affine(layer.layers[-1], parent)
    raise UnsupportedModelError(
        f"Cannot find the layer that makes the logits of '{parent.name}': '{layer.name}' comes before "
        "the final activation and is not a linear layer"
    )
