"""Scores to probabilities: the one definition of softmax, sigmoid and log-sum-exp (numpy, float64)
that teachers, target files, evaluation and the filter's cascade share. Part of the run time a
packaged student carries, so numpy only (scipy.special would add a dependency the torch-free
runtime does not otherwise need)."""

import numpy


def logsumexp(x: numpy.ndarray, axis: int = -1) -> numpy.ndarray:
    """Stable log(sum(exp(x))) along `axis` (that axis is removed)."""
    x = numpy.asarray(x, dtype="float64")
    top = numpy.max(x, axis=axis, keepdims=True)
    top = numpy.where(numpy.isfinite(top), top, 0.0)
    return numpy.squeeze(top, axis=axis) + numpy.log(numpy.sum(numpy.exp(x - top), axis=axis))


def log_softmax(x: numpy.ndarray, axis: int = -1) -> numpy.ndarray:
    """Row-wise (by default) log-softmax in float64."""
    x = numpy.asarray(x, dtype="float64")
    return x - numpy.expand_dims(logsumexp(x, axis=axis), axis)


def softmax(x: numpy.ndarray, axis: int = -1) -> numpy.ndarray:
    """Row-wise (by default) softmax in float64."""
    return numpy.exp(log_softmax(x, axis=axis))


def sigmoid(x: numpy.ndarray) -> numpy.ndarray:
    """Element-wise logistic function in float64, without overflow warnings for large |x|."""
    x = numpy.asarray(x, dtype="float64")
    return numpy.exp(-numpy.logaddexp(0.0, -x))


def log_sigmoid(x: numpy.ndarray) -> numpy.ndarray:
    """Element-wise log of the logistic function in float64."""
    return -numpy.logaddexp(0.0, -numpy.asarray(x, dtype="float64"))


def scores_to_probabilities(
    scores: numpy.ndarray, exclusive: bool, temperature: float = 1.0
) -> numpy.ndarray:
    """Turn stored scores (log-probabilities or logits) into probabilities at a temperature."""
    z = numpy.asarray(scores, dtype="float64") / temperature
    return softmax(z) if exclusive else sigmoid(z)
