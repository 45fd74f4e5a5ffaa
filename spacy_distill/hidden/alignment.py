"""Teacher hidden states on spaCy tokens, and pooled per text.

A teacher's tokenizer cuts a text into word pieces; spaCy cuts it into tokens. The two rarely
agree (punctuation, emoji, contractions, whitespace runs). Both know where their units sit in the
text, so they meet on character offsets: a spaCy token's vector is the mean of the vectors of
every word piece whose characters overlap the token's. A piece's span is first trimmed of
surrounding whitespace (byte-level BPE pieces such as "Ġword" often start at the space before the
word), so a piece never lands on a whitespace token. A token that no piece overlaps (a whitespace
token, or a token past the teacher's truncation) gets a zero vector and mask 0: the loss skips it.

Only numpy is used here; teachers pass their states in as arrays.
"""

from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import numpy

from ..errors import DistillError

POOLINGS = ("mean", "cls", "last")
LEVELS = ("doc", "token", "both")

Span = Tuple[int, int]


@dataclass
class HiddenStates:
    """A teacher's hidden states for one text.

    doc (Optional[numpy.ndarray]): (width,) the pooled vector, or None when not asked for.
    tokens (Optional[numpy.ndarray]): (n_tokens, width) one vector per spaCy token, or None.
    token_mask (Optional[numpy.ndarray]): (n_tokens,) bool, False where no piece covers the
        token (its vector is zeros).
    n_pieces (int): how many word pieces the teacher read (after truncation).
    truncated (bool): whether the teacher cut the text.
    """

    doc: Optional[numpy.ndarray] = None
    tokens: Optional[numpy.ndarray] = None
    token_mask: Optional[numpy.ndarray] = None
    n_pieces: int = 0
    truncated: bool = False

    @property
    def width(self) -> int:
        array = self.doc if self.doc is not None else self.tokens
        return 0 if array is None else int(array.shape[-1])


def token_spans(doc) -> List[Span]:
    """The character span (start, end) of each token of a spaCy Doc."""
    return [(token.idx, token.idx + len(token.text)) for token in doc]


def trim_span(text: str, span: Span) -> Span:
    """A span without the whitespace at its edges (empty when it holds whitespace only)."""
    start, end = int(span[0]), int(span[1])
    end = min(end, len(text))
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def align_to_tokens(
    text: str,
    tokens: Sequence[Span],
    pieces: Sequence[Span],
    states: numpy.ndarray,
) -> Tuple[numpy.ndarray, numpy.ndarray]:
    """Average word-piece vectors onto tokens by character overlap.

    text (str): the text both tokenizations cut.
    tokens (Sequence[Span]): the (start, end) character span of each spaCy token.
    pieces (Sequence[Span]): the (start, end) span of each word piece, as the tokenizer's
        offset mapping gives it; special tokens ([CLS], <s>, padding) have empty spans (0, 0)
        and are left out.
    states (numpy.ndarray): (n_pieces, width) the pieces' vectors.
    RETURNS (Tuple[numpy.ndarray, numpy.ndarray]): (n_tokens, width) float32 vectors, zeros
        where no piece overlaps the token, and the (n_tokens,) bool mask of tokens covered.
    """
    states = numpy.asarray(states, dtype="float32")
    if states.ndim != 2 or states.shape[0] != len(pieces):
        raise DistillError(
            f"align_to_tokens: {len(pieces)} piece offsets but states of shape {states.shape}"
        )
    n_tokens, width = len(tokens), states.shape[1]
    sums = numpy.zeros((n_tokens, width), dtype="float64")
    counts = numpy.zeros((n_tokens,), dtype="int64")
    if n_tokens:
        starts = numpy.asarray([s for s, _ in tokens], dtype="int64")
        ends = numpy.asarray([e for _, e in tokens], dtype="int64")
        for row, span in enumerate(pieces):
            p_start, p_end = trim_span(text, span)
            if p_end <= p_start:
                continue
            # Tokens are sorted and do not overlap: find those that overlap [p_start, p_end).
            first = int(numpy.searchsorted(ends, p_start, side="right"))
            last = int(numpy.searchsorted(starts, p_end, side="left"))
            for t in range(first, last):
                if starts[t] < p_end and ends[t] > p_start and ends[t] > starts[t]:
                    sums[t] += states[row]
                    counts[t] += 1
    mask = counts > 0
    vectors = numpy.zeros((n_tokens, width), dtype="float32")
    vectors[mask] = (sums[mask] / counts[mask, None]).astype("float32")
    return vectors, mask


def align_ragged(
    states: numpy.ndarray, lengths: Sequence[int], indices: numpy.ndarray
) -> Tuple[numpy.ndarray, numpy.ndarray]:
    """Average rows onto tokens given a ragged alignment (spacy-transformers' `trf_data.align`).

    states (numpy.ndarray): (n_rows, width) the flattened word-piece vectors.
    lengths (Sequence[int]): how many rows each token has.
    indices (numpy.ndarray): the row indices, token after token.
    RETURNS (Tuple[numpy.ndarray, numpy.ndarray]): (n_tokens, width) vectors (zeros where a
        token has no row) and the (n_tokens,) bool mask.
    """
    states = numpy.asarray(states, dtype="float32")
    lengths = numpy.asarray(lengths, dtype="int64").reshape(-1)
    indices = numpy.asarray(indices, dtype="int64").reshape(-1)
    vectors = numpy.zeros((len(lengths), states.shape[1]), dtype="float32")
    start = 0
    for t, length in enumerate(lengths):
        if length:
            vectors[t] = states[indices[start : start + length]].mean(axis=0)
        start += length
    return vectors, lengths > 0


def pool_pieces(states: numpy.ndarray, pooling: str) -> numpy.ndarray:
    """One vector for a text from its (real, unpadded) piece vectors, special tokens included,
    as `HiddenStateExtractor` pools them.

    states (numpy.ndarray): (n_pieces, width).
    pooling (str): "mean", "cls" (the first piece) or "last" (the last piece: what a causal LM
        has read the whole text at).
    RETURNS (numpy.ndarray): (width,) float32.
    """
    if pooling not in POOLINGS:
        raise DistillError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
    states = numpy.asarray(states, dtype="float32")
    if states.shape[0] == 0:
        return numpy.zeros((states.shape[1],), dtype="float32")
    if pooling == "mean":
        return states.mean(axis=0)
    return states[0] if pooling == "cls" else states[-1]


def select_layer(hidden_states: Sequence, layer: Optional[int], last_k: Optional[int]):
    """One layer of a model's hidden states (0: embeddings, -1: last) or the mean of the last k.

    hidden_states (Sequence): the model's hidden states, embeddings first (arrays or tensors).
    layer (Optional[int]): the index; ignored when last_k is given.
    last_k (Optional[int]): average the last k layers.
    RETURNS: the selected state, of the type given.
    """
    n_states = len(hidden_states)
    if last_k is not None:
        if not isinstance(last_k, int) or not 1 <= last_k <= n_states:
            raise DistillError(f"last_k must be between 1 and {n_states}, got {last_k!r}")
        selected = list(hidden_states[-last_k:])
        total = (
            selected[0].float() if hasattr(selected[0], "float") else selected[0].astype("float32")
        )
        for state in selected[1:]:
            total = total + (state.float() if hasattr(state, "float") else state)
        return total / last_k
    layer = -1 if layer is None else layer
    if not isinstance(layer, int) or not -n_states <= layer < n_states:
        raise DistillError(
            f"layer {layer!r} is out of range: the model has {n_states} hidden states "
            f"(0 = embeddings ... {n_states - 1} = last layer; or -1 ... -{n_states})"
        )
    return hidden_states[layer]


def check_level(level: str) -> str:
    if level not in LEVELS:
        raise DistillError(f"hidden level must be one of {LEVELS}, got {level!r}")
    return level
