"""Temperature scaling: a student's probabilities made to mean what they say.

A student distilled at temperature T from soft labels, or trained on few examples, is often
over- or under-confident; thresholds, the review band and the cascade all read its probabilities
as probabilities. Temperature scaling (Guo et al., 2017) fits one scalar on dev data with gold:
softmax(z / t) (or sigmoid(z / t) for multi-label) with the t that minimises the negative
log-likelihood. It never changes the argmax.

The temperature is stored *in the weights*: the layer that makes the logits (its `W` and `b`)
is divided by t, which gives exactly z / t. The calibrated student is still a plain spaCy textcat
with no extra layer and no runtime cost, exports unchanged, and `meta.json` records what was done
(`spacy_distill.training.calibration`: temperature, NLL and ECE before and after, data).
"""

import math
from typing import Any, Dict

import numpy
from spacy.language import Language
from thinc.api import Model

from ..errors import DistillError
from ..ml.logits import logit_layer
from ..pipeline.meta import stored_calibration, write_calibration  # noqa: E402
from ..probabilities import scores_to_probabilities

MIN_TEMPERATURE, MAX_TEMPERATURE = 0.05, 20.0
_EPS = 1e-12


def logits_from_probabilities(probs: numpy.ndarray, exclusive: bool) -> numpy.ndarray:
    """Logits that reproduce these probabilities (for softmax: up to a constant per row, which
    softmax ignores)."""
    p = numpy.clip(numpy.asarray(probs, dtype="float64"), _EPS, 1.0 - _EPS)
    return numpy.log(p) if exclusive else numpy.log(p) - numpy.log1p(-p)


def scaled_probabilities(
    logits: numpy.ndarray, temperature: float, exclusive: bool
) -> numpy.ndarray:
    """softmax(z / t) or sigmoid(z / t)."""
    return scores_to_probabilities(logits, exclusive, temperature)


def negative_log_likelihood(gold: numpy.ndarray, probs: numpy.ndarray, exclusive: bool) -> float:
    """Mean NLL of gold (exclusive: the gold class; multi-label: binary cross-entropy per cell)."""
    p = numpy.clip(probs, _EPS, 1.0 - _EPS)
    if exclusive:
        return float(-(gold * numpy.log(p)).sum(axis=1).mean())
    return float(-(gold * numpy.log(p) + (1 - gold) * numpy.log1p(-p)).mean())


def fit_temperature(gold: numpy.ndarray, probs: numpy.ndarray, exclusive: bool) -> float:
    """The temperature that minimises the NLL of gold on these docs (golden-section search on
    log t, which the NLL is unimodal in for temperature scaling).

    gold (numpy.ndarray): (n, L) 0/1, NaN where unknown (rows with any NaN are left out).
    probs (numpy.ndarray): (n, L) the model's probabilities.
    exclusive (bool): softmax (True) or sigmoid (False) outputs.
    RETURNS (float): the temperature, within [0.05, 20].
    """
    known = ~numpy.isnan(gold).any(axis=1)
    if not known.any():
        raise DistillError("no docs with gold labels to fit a temperature on")
    y, z = gold[known], logits_from_probabilities(probs[known], exclusive)

    def loss(log_t: float) -> float:
        return negative_log_likelihood(
            y, scaled_probabilities(z, math.exp(log_t), exclusive), exclusive
        )

    lo, hi = math.log(MIN_TEMPERATURE), math.log(MAX_TEMPERATURE)
    ratio = (math.sqrt(5) - 1) / 2
    a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
    fa, fb = loss(a), loss(b)
    for _ in range(60):
        if fa < fb:
            hi, b, fb = b, a, fa
            a = hi - ratio * (hi - lo)
            fa = loss(a)
        else:
            lo, a, fa = a, b, fb
            b = lo + ratio * (hi - lo)
            fb = loss(b)
    return float(math.exp((lo + hi) / 2))


def apply_temperature(model: Model, temperature: float) -> None:
    """Divide the logits of a textcat model by `temperature`, in its weights (in place)."""
    if not temperature > 0:
        raise DistillError(f"temperature must be > 0, got {temperature}")
    layer = logit_layer(model)
    for name in ("W", "b"):
        layer.set_param(name, layer.get_param(name) / temperature)


def calibrate(
    nlp: Language,
    component: str,
    gold: numpy.ndarray,
    probs: numpy.ndarray,
    *,
    exclusive: bool,
    data: str,
) -> Dict[str, Any]:
    """Fit a temperature on (gold, probs), apply it to the component's weights and record it in
    `nlp.meta` (a previous calibration's temperature is multiplied in).

    RETURNS (Dict[str, Any]): temperature (this fit), total_temperature, nll_before/after,
        ece_before/after, n, data.
    """
    from ..evaluation.metrics import calibration as calibration_metrics

    temperature = fit_temperature(gold, probs, exclusive)
    apply_temperature(nlp.get_pipe(component).model, temperature)
    known = ~numpy.isnan(gold).any(axis=1)
    after = scaled_probabilities(
        logits_from_probabilities(probs, exclusive), temperature, exclusive
    )
    previous = float(stored_calibration(nlp.meta).get("total_temperature") or 1.0)
    record = {
        "temperature": temperature,
        "total_temperature": previous * temperature,
        "nll_before": negative_log_likelihood(gold[known], probs[known], exclusive),
        "nll_after": negative_log_likelihood(gold[known], after[known], exclusive),
        "ece_before": calibration_metrics(gold, probs, exclusive=exclusive)["ece"],
        "ece_after": calibration_metrics(gold, after, exclusive=exclusive)["ece"],
        "n": int(known.sum()),
        "data": data,
    }
    write_calibration(nlp.meta, record)
    return {**record, "probabilities": after}


__all__ = ["apply_temperature", "calibrate", "fit_temperature", "scaled_probabilities"]
