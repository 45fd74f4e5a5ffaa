"""Stored teacher scores to probabilities: the one conversion the target files, evaluation and
the filter's cascade share. Part of the run time a packaged student carries (numpy only)."""
import numpy


def scores_to_probabilities(
    scores: numpy.ndarray, exclusive: bool, temperature: float = 1.0
) -> numpy.ndarray:
    """Turn stored scores (log-probabilities or logits) into probabilities at a temperature."""
    z = numpy.asarray(scores, dtype="float64") / temperature
    if exclusive:
        z = z - z.max(axis=-1, keepdims=True)
        e = numpy.exp(z)
        return e / e.sum(axis=-1, keepdims=True)
    return 1.0 / (1.0 + numpy.exp(-z))
