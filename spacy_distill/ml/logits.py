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

Layers are told apart by their public structure (name, child layers, parameters), not by their
forward function, which thinc keeps private: thinc names a chain after its layers joined by
`>>`, `with_cpu` and `resizable` after the layer they wrap, and the output layers by their kind.
A model loaded from disk keeps these names (thinc stores them with the weights).
"""

from typing import Any, Callable, Optional, Tuple

from thinc.model import Model
from thinc.types import Floats2d

from ..errors import UnsupportedModelError

CHAIN, WITH_CPU, RESIZABLE, SOFTMAX, ACTIVATION = (
    "chain",
    "with_cpu",
    "resizable",
    "softmax",
    "activation",
)
_ACTIVATIONS = ("softmax_activation", "logistic", "sigmoid_activation")
_WRAPPERS = (CHAIN, WITH_CPU, RESIZABLE)

LogitsBackprop = Callable[[Floats2d], Any]


def layer_kind(model: Model) -> Optional[str]:
    """What `forward_logits` sees in a layer: one of the kinds above, or None (anything else)."""
    layers = model.layers
    names = [layer.name for layer in layers]
    if not layers:
        # Parameters are named before they are initialized: ask for the names, not the values.
        if model.name == "softmax" and {"W", "b"} <= set(model.param_names):
            return SOFTMAX
        return ACTIVATION if model.name in _ACTIVATIONS else None
    if len(layers) == 1 and model.name == f"with_cpu({names[0]})":
        return WITH_CPU
    if len(layers) == 1 and model.name == f"resizable({names[0]})":
        return RESIZABLE
    if model.name == ">>".join(names):
        return CHAIN
    return None


def forward_logits(model: Model, X: Any, is_train: bool) -> Tuple[Floats2d, LogitsBackprop]:
    """Run a textcat model and return its logits and a callback that takes d(logits).

    model (Model): a text-classification model ending in a softmax or sigmoid.
    X (Any): the model's input (a list of docs for a full textcat model).
    is_train (bool): whether to run in training mode (dropout on).
    RETURNS (Tuple[Floats2d, Callable]): logits with softmax(logits) (exclusive) or
        sigmoid(logits) (multi-label) equal to the model's output, and the backprop callback.
    """
    kind = layer_kind(model)
    if kind == CHAIN:
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
    if kind == WITH_CPU:
        logits, backprop_inner = forward_logits(model.layers[0], _to_numpy(X), is_train)

        def backprop_with_cpu(d_logits: Floats2d) -> Any:
            return backprop_inner(_to_numpy(d_logits))

        return model.ops.asarray(logits), backprop_with_cpu
    if kind == RESIZABLE:
        return forward_logits(model.layers[0], X, is_train)
    if kind == SOFTMAX:
        _, backprop_softmax = model(X, is_train=True)
        temperature = model.attrs.get("softmax_temperature", 1.0)
        logits = model.ops.affine(X, model.get_param("W"), model.get_param("b"))
        if temperature != 1.0:
            logits = logits / temperature
        return logits, backprop_softmax
    if kind == ACTIVATION:
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
    kind = layer_kind(model)
    if kind in _WRAPPERS:
        return has_readable_logits(model.layers[-1])
    return kind in (SOFTMAX, ACTIVATION)


def _identity(d_logits: Floats2d) -> Floats2d:
    return d_logits


def _to_numpy(X: Any) -> Any:
    """What `with_cpu` hands its layer: device arrays copied to numpy, containers walked."""
    if isinstance(X, (tuple, list)):
        return type(X)(_to_numpy(x) for x in X)
    return X.get() if hasattr(X, "get") and not isinstance(X, dict) else X


_AFFINE_LAYERS = ("sparse_linear", "linear", "softmax")


def logit_layer(model: Model) -> Model:
    """The affine layer whose output is the model's logits (its `W` and `b` make them).

    model (Model): a text-classification model ending in a softmax or sigmoid.
    RETURNS (Model): thinc's `Softmax` (whose affine part gives the logits), or the
        `SparseLinear` / `Linear` layer under a final activation.
    """
    kind = layer_kind(model)
    if kind == CHAIN:
        last = model.layers[-1]
        if _is_activation(last) and len(model.layers) > 1:
            return _last_affine(model.layers[-2], model)
        return logit_layer(last)
    if kind in (WITH_CPU, RESIZABLE):
        return logit_layer(model.layers[0])
    if kind == SOFTMAX:
        return model
    raise UnsupportedModelError(f"Cannot find the layer that makes the logits of '{model.name}'")


def _is_activation(layer: Model) -> bool:
    kind = layer_kind(layer)
    if kind in (WITH_CPU, RESIZABLE):
        return _is_activation(layer.layers[0])
    return kind == ACTIVATION


def _last_affine(layer: Model, parent: Model) -> Model:
    if layer.name in _AFFINE_LAYERS and layer.has_param("W") and layer.has_param("b"):
        return layer
    if layer_kind(layer) in _WRAPPERS:
        return _last_affine(layer.layers[-1], parent)
    raise UnsupportedModelError(
        f"Cannot find the layer that makes the logits of '{parent.name}': '{layer.name}' comes before "
        "the final activation and is not a linear layer"
    )
