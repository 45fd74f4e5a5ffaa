"""Word vectors from the teacher's *contextual* token states, averaged over the corpus.

A word encoded on its own ("good", with nothing around it) is an input the teacher rarely sees,
and LLM states of single words carry little of what the teacher makes of the word in a sentence.
The average of a word type's in-context states over a corpus is a much better static embedding
(Bommasani et al. 2020, "Interpreting Pretrained Contextualized Representations via Reductions
to Static Embeddings"). `annotate --hidden token|both` already stores one state per spaCy token,
aligned through the tokenizer's offsets, in the target files: the vectors cost no teacher call.

Tokens that no word piece covers (mask 0) and whitespace tokens are skipped. A word type none of
whose tokens has a state gets the mean of all the word vectors: it is centred to zero by the PCA
that follows, the same start as an unknown word.
"""

from pathlib import Path
from typing import Any, Dict, Iterable, Union

import numpy
import spacy
from tqdm import tqdm

from ..data.targets import get_target, read_targets
from ..errors import DistillError
from .vocabulary import WORD_ATTRS, Vocabulary


def average_token_states(
    paths: Iterable[Union[str, Path]],
    vocabulary: Vocabulary,
    *,
    lang: str = "en",
    show_progress: bool = True,
) -> Dict[str, Any]:
    """Mean stored token state per word type of the vocabulary.

    paths (Iterable[Union[str, Path]]): target files (or folders of chunks) annotated with
        token-level hidden states; every doc must have them, with the same teacher settings.
    vocabulary (Vocabulary): the word types (keyed by `vocabulary.attr`).
    lang (str): the language whose vocab decodes the files (its lexical attributes key the words,
        as in `count_words`).
    show_progress (bool): a progress bar over the docs, with rate and time left.
    RETURNS (Dict[str, Any]): "vectors" (n_words, width) float64, "n_states" per word,
        "n_missing" (word types without any state), "teacher" (id and fingerprint), "source"
        (the states' layer, pooling, model, projection), "n_docs".
    """
    prop = WORD_ATTRS[vocabulary.attr][1]
    vocab = spacy.blank(lang).vocab
    index = {word: i for i, word in enumerate(vocabulary.words)}
    sums = None
    counts = numpy.zeros(len(vocabulary), dtype="int64")
    signature = teacher = source = None
    n_docs = 0
    bar = tqdm(desc="token states", unit="doc", disable=not show_progress)
    for path in paths:
        for doc_index, doc in enumerate(read_targets(path, vocab)):
            where = f"{path}: doc {doc_index}"
            target = get_target(doc, where)
            stored = target.stored_hidden(where, n_tokens=len(doc)) if target is not None else None
            if stored is None or stored.tokens is None:
                raise DistillError(
                    f"{where}: no token-level hidden states; annotate with `--hidden token` (or both) "
                    "to build word vectors from them"
                )
            if signature is None:
                signature, source = (
                    stored.signature,
                    {**stored.source, "projection": stored.projection},
                )
                teacher = {"id": target.teacher_id, "fingerprint": target.fingerprint}
                sums = numpy.zeros((len(vocabulary), stored.width), dtype="float64")
            elif stored.signature != signature:
                raise DistillError(
                    f"{where}: token states made with other teacher settings or another projection "
                    f"than the first doc's ({stored.signature} vs {signature}); annotate all files alike"
                )
            for token, vector, covered in zip(doc, stored.tokens, stored.token_mask):
                row = index.get(getattr(token, prop))
                if covered and row is not None and not token.is_space:
                    sums[row] += vector
                    counts[row] += 1
            n_docs += 1
            bar.update(1)
    bar.close()
    if sums is None:
        raise DistillError("no docs with token-level hidden states in the data files")
    present = counts > 0
    if not present.any():
        raise DistillError("no token of the vocabulary has a stored state")
    vectors = numpy.empty_like(sums)
    vectors[present] = sums[present] / counts[present, None]
    vectors[~present] = vectors[present].mean(axis=0)
    return {
        "vectors": vectors,
        "n_states": counts,
        "n_missing": int((~present).sum()),
        "teacher": teacher,
        "source": source,
        "n_docs": n_docs,
    }
