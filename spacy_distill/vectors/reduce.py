"""From the teacher's raw word encodings to compact student vectors (model2vec's recipe).

1. Standardise each teacher dimension. LLM hidden states have a few dimensions with huge
   activations that would otherwise own every principal component; the probe teacher reads
   standardised features too.
2. PCA to `dims` dimensions (centred SVD). Components come in order of variance, so the first k
   columns of the result are the k-dimensional PCA: a narrower student takes a prefix.
3. Scale to unit RMS per entry: a trainable table whose entries are ~1 keeps the teacher's
   geometry for longer under Adam's ~1e-3 steps than one whose entries are ~0.01.
4. Optionally down-weight frequent words, as SIF / model2vec do: weight = a / (a + p(word)),
   with p(word) from the corpus counts ("sif") or from Zipf's law on the frequency rank ("zipf",
   model2vec's estimate when no counts exist). Mean pooling then hears content words over
   function words.
"""

from typing import Any, Dict, Optional, Sequence, Tuple

import numpy

from ..errors import DistillError

WEIGHTINGS = ("sif", "zipf", "none")
DEFAULT_SIF_COEFFICIENT = 1e-3


def principal_components(
    matrix: numpy.ndarray, dims: int
) -> Tuple[numpy.ndarray, numpy.ndarray, float]:
    """The top `dims` principal directions of `matrix`: the one PCA of word vectors and of
    hidden-state projections (`hidden.projection.HiddenProjection.fit_pca`).

    matrix (numpy.ndarray): (n, width) vectors, n >= dims (checked by the callers, whose
        errors name their own arguments).
    dims (int): how many components.
    RETURNS (Tuple[numpy.ndarray, numpy.ndarray, float]): the mean (width,), the components
        (dims, width) in order of variance, each with its largest loading positive (so refitting
        the same data gives the same map, whatever scikit-learn's sign convention), and the
        share of the variance they keep.
    """
    # Imported here: only `word-vectors` and `annotate --hidden-reduction pca` fit a PCA.
    from sklearn.decomposition import PCA

    matrix = numpy.asarray(matrix, dtype="float64")
    pca = PCA(n_components=dims, svd_solver="full").fit(matrix)
    components = numpy.array(pca.components_, dtype="float64")
    signs = numpy.sign(components[numpy.arange(dims), numpy.abs(components).argmax(axis=1)])
    components *= numpy.where(signs == 0, 1.0, signs)[:, None]
    # The share from the singular values: sklearn's explained_variance_ratio_ divides by zero
    # (with a warning) on constant data, where this gives 0.
    total = float(((matrix - pca.mean_) ** 2).sum())
    explained = float((pca.singular_values_**2).sum() / max(total, 1e-30))
    return numpy.asarray(pca.mean_, dtype="float64"), components, explained


def pca_reduce(matrix: numpy.ndarray, dims: int) -> Tuple[numpy.ndarray, Dict[str, Any]]:
    """Standardise, then project onto the top `dims` principal components (signs fixed so the
    result is deterministic).

    matrix (numpy.ndarray): (n_words, width) teacher encodings.
    dims (int): output width; at most min(n_words, width).
    RETURNS (Tuple[numpy.ndarray, Dict[str, Any]]): (n_words, dims) float32 with unit RMS, and
        {"explained_variance": share of the standardised variance kept}.
    """
    matrix = numpy.asarray(matrix, dtype="float64")
    n, width = matrix.shape
    if not 1 <= dims <= min(n, width):
        raise DistillError(
            f"dims must be between 1 and min(words, teacher width) = {min(n, width)}, got {dims}"
        )
    scale = matrix.std(axis=0)
    scale[scale == 0] = 1.0
    centred = (matrix - matrix.mean(axis=0)) / scale
    _, components, explained = principal_components(centred, dims)
    reduced = centred @ components.T
    rms = numpy.sqrt((reduced**2).mean()) or 1.0
    return (reduced / rms).astype("float32"), {"explained_variance": explained}


def frequency_weights(
    counts: Sequence[int], weighting: str = "sif", coefficient: float = DEFAULT_SIF_COEFFICIENT
) -> Optional[numpy.ndarray]:
    """Per-word weights a / (a + p(word)); None for "none".

    counts (Sequence[int]): corpus counts, most frequent first.
    weighting (str): "sif" (p from the counts), "zipf" (p from the rank) or "none".
    coefficient (float): a; smaller down-weights frequent words more.
    RETURNS (Optional[numpy.ndarray]): (n_words,) float32 in (0, 1], or None.
    """
    if weighting not in WEIGHTINGS:
        raise DistillError(f"weighting must be one of {WEIGHTINGS}, got {weighting!r}")
    if weighting == "none":
        return None
    if not coefficient > 0:
        raise DistillError(f"the SIF coefficient must be > 0, got {coefficient}")
    counts = numpy.asarray(counts, dtype="float64")
    if weighting == "sif":
        proba = counts / counts.sum()
    else:
        inverse_rank = 1.0 / numpy.arange(2, len(counts) + 2)
        proba = inverse_rank / inverse_rank.sum()
    return (coefficient / (coefficient + proba)).astype("float32")
