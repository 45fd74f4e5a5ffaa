"""Synonym replacement: each word, with probability `rate` (at least one per variant when any
has a synonym), becomes one of its `top_k` nearest neighbours, in the case of the word it
replaces. The neighbours come from

- a synonym table you supply (`spacy-distill.SynonymTable.v1`: JSON {"word": ["syn", ...]} or
  a TSV file, one word per line followed by its synonyms);
- a spaCy pipeline's static vectors (`spacy-distill.VectorSynonyms.v1`: cosine neighbours from
  `Vectors.most_similar`). When the pipeline sets part-of-speech tags (a tagger, morphologizer
  or attribute ruler), only words whose tag is in `pos` are replaced, and only by neighbours that
  get the same tag when tagged alone (the cheap approximation of "in this context");
- a Hugging Face model's input embeddings, e.g. the teacher's (`spacy-distill.EmbeddingSynonyms.v1`):
  cosine neighbours among the vocabulary entries that are whole words (one token when written
  after a space). torch and transformers are imported when it is built.
"""

import json
import random
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy

from ..errors import DistillError
from ..registry import registry
from .base import (
    Augmenter,
    check_count,
    check_rate,
    choose_some,
    copy_case,
    replace_spans,
    word_spans,
)

DEFAULT_POS = ("ADJ", "ADV", "NOUN", "VERB")
POS_PIPES = ("tagger", "morphologizer", "attribute_ruler")


class SynonymReplacer(Augmenter):
    """Replaces words by neighbours from `neighbours(word)`; subclasses supply them."""

    param_names = ("rate", "top_k")

    def __init__(self, n: int = 1, rate: float = 0.15, top_k: int = 5) -> None:
        super().__init__(n)
        self.rate = check_rate(rate, "rate")
        self.top_k = check_count(top_k, "top_k", least=1)

    def neighbours(self, word: str) -> List[str]:
        raise NotImplementedError

    def candidates(self, text: str) -> List[Tuple[Tuple[int, int], List[str]]]:
        """The words that have neighbours, with them (only these can be replaced)."""
        found = []
        for start, end in word_spans(text):
            word = text[start:end]
            if not any(c.isalpha() for c in word):
                continue
            options = self.neighbours(word)
            if options:
                found.append(((start, end), options))
        return found

    def transform(self, text: str, rng: random.Random) -> str:
        return self._replace(text, self.candidates(text), rng)

    def augment(self, text: str, rng: random.Random, n: int) -> List[str]:
        candidates = self.candidates(text)  # once per seed: lookups can be costly
        found: List[str] = []
        for _ in range(n * 4):
            if len(found) >= n or not candidates:
                break
            variant = self._replace(text, candidates, rng)
            if variant != text and variant not in found:
                found.append(variant)
        return found

    def _replace(self, text: str, candidates, rng: random.Random) -> str:
        replacements = {}
        for span, options in choose_some(candidates, self.rate, rng, at_least_one=True):
            word = text[span[0] : span[1]]
            replacements[span] = copy_case(word, options[rng.randrange(len(options))])
        return replace_spans(text, replacements)


def read_synonym_table(path: Path) -> Dict[str, List[str]]:
    """A synonym table from JSON ({"word": ["syn", ...]}) or TSV (word, tab, synonyms)."""
    if not path.is_file():
        raise DistillError(f"{path}: synonym table not found")
    table: Dict[str, List[str]] = {}
    if path.suffix == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf8"))
        except json.JSONDecodeError as err:
            raise DistillError(f"{path}:{err.lineno}: invalid JSON ({err.msg})") from None
        if not isinstance(data, dict):
            raise DistillError(f"{path}: expected an object {{word: [synonyms]}}")
        for word, synonyms in data.items():
            if not isinstance(synonyms, list) or not all(
                isinstance(s, str) and s.strip() for s in synonyms
            ):
                raise DistillError(f"{path}: entry {word!r}: expected a list of non-empty strings")
            table[word] = synonyms
        return table
    with path.open(encoding="utf8") as file_:
        for line_number, line in enumerate(file_, start=1):
            parts = [p.strip() for p in line.rstrip("\n").split("\t")]
            if not parts[0]:
                continue
            if len(parts) < 2 or not all(parts[1:]):
                raise DistillError(
                    f"{path}:{line_number}: expected a word and its synonyms, tab-separated"
                )
            table[parts[0]] = parts[1:]
    return table


class SynonymTable(SynonymReplacer):
    """Neighbours from a user-supplied table (looked up in lower case)."""

    method = "spacy-distill.SynonymTable.v1"
    param_names = ("rate", "top_k", "path")

    def __init__(
        self,
        table: Dict[str, Sequence[str]],
        n: int = 1,
        rate: float = 0.15,
        top_k: int = 5,
        path: Optional[str] = None,
    ) -> None:
        super().__init__(n, rate, top_k)
        self.path = path
        self.table = {
            word.casefold(): [s for s in synonyms if s.casefold() != word.casefold()][:top_k]
            for word, synonyms in table.items()
        }

    def neighbours(self, word: str) -> List[str]:
        return self.table.get(word.casefold(), [])


class VectorSynonyms(SynonymReplacer):
    """Neighbours from a spaCy pipeline's static vectors, restricted by part of speech when the
    pipeline tags it."""

    method = "spacy-distill.VectorSynonyms.v1"
    param_names = ("rate", "top_k", "min_similarity", "pos", "model")

    def __init__(
        self,
        nlp,
        n: int = 1,
        rate: float = 0.15,
        top_k: int = 5,
        min_similarity: float = 0.5,
        pos: Sequence[str] = DEFAULT_POS,
        model: Optional[str] = None,
    ) -> None:
        super().__init__(n, rate, top_k)
        self.nlp = nlp
        self.model = model
        self.min_similarity = float(min_similarity)
        self.pos = list(pos)
        vectors = nlp.vocab.vectors
        if vectors.shape[0] == 0 or vectors.shape[1] == 0:
            raise DistillError(
                f"{model or 'the pipeline'}: has no static vectors to find synonyms in"
            )
        if getattr(vectors, "mode", "default") != "default":
            raise DistillError(
                f"{model}: {vectors.mode} vectors cannot list neighbours; use default vectors"
            )
        self.tags_pos = any(name in nlp.pipe_names for name in POS_PIPES)
        self._cache: Dict[str, List[Tuple[str, float]]] = {}
        self._pos_cache: Dict[str, str] = {}

    def _neighbours_scored(self, word: str) -> List[Tuple[str, float]]:
        key = word.casefold()
        if key not in self._cache:
            vectors = self.nlp.vocab.vectors
            strings = self.nlp.vocab.strings
            found: List[Tuple[str, float]] = []
            if key in strings and strings[key] in vectors:
                query = vectors[strings[key]].reshape(1, -1)
                keys, _, scores = vectors.most_similar(
                    numpy.asarray(query), n=min(self.top_k * 4 + 1, vectors.n_keys)
                )
                seen = {key}
                for k, score in zip(keys[0], scores[0]):
                    candidate = strings[int(k)]
                    folded = candidate.casefold()
                    if folded in seen or not candidate.isalpha() or score < self.min_similarity:
                        continue
                    seen.add(folded)
                    found.append((folded, float(score)))
            self._cache[key] = found
        return self._cache[key]

    def _pos_alone(self, word: str) -> str:
        if word not in self._pos_cache:
            doc = self.nlp(word)
            self._pos_cache[word] = doc[0].pos_ if len(doc) == 1 else ""
        return self._pos_cache[word]

    def neighbours(self, word: str) -> List[str]:
        return [w for w, _ in self._neighbours_scored(word)][: self.top_k]

    def candidates(self, text: str):
        if not self.tags_pos:
            return super().candidates(text)
        doc = self.nlp(text)
        found = []
        for token in doc:
            if token.pos_ not in self.pos or not token.is_alpha:
                continue
            options = [
                w
                for w, _ in self._neighbours_scored(token.text)
                if self._pos_alone(w) == token.pos_
            ]
            if options:
                found.append(((token.idx, token.idx + len(token.text)), options[: self.top_k]))
        return found


class EmbeddingSynonyms(SynonymReplacer):
    """Neighbours from the input embeddings of a Hugging Face model (the teacher's, say)."""

    method = "spacy-distill.EmbeddingSynonyms.v1"
    param_names = ("rate", "top_k", "min_similarity", "model")

    def __init__(
        self,
        embeddings: numpy.ndarray,
        tokenizer,
        n: int = 1,
        rate: float = 0.15,
        top_k: int = 5,
        min_similarity: float = 0.3,
        model: Optional[str] = None,
    ) -> None:
        super().__init__(n, rate, top_k)
        self.model = model
        self.min_similarity = float(min_similarity)
        self.tokenizer = tokenizer
        self.word_ids, self.words = self._whole_words(tokenizer)
        if not self.word_ids:
            raise DistillError(f"{model}: the tokenizer's vocabulary holds no whole words")
        matrix = numpy.asarray(embeddings, dtype="float32")[self.word_ids]
        norms = numpy.linalg.norm(matrix, axis=1, keepdims=True)
        self.matrix = matrix / numpy.maximum(norms, 1e-8)
        self.row_of = {word.casefold(): i for i, word in reversed(list(enumerate(self.words)))}
        self._cache: Dict[str, List[str]] = {}

    @staticmethod
    def _whole_words(tokenizer) -> Tuple[List[int], List[str]]:
        """Vocabulary entries that are whole alphabetic words: decoded alone they read as a word,
        and that word, written after a space, encodes back to exactly this entry."""
        special = set(getattr(tokenizer, "all_special_ids", []) or [])
        ids = [i for i in range(len(tokenizer)) if i not in special]
        words = [w.strip() for w in tokenizer.batch_decode([[i] for i in ids])]
        pairs = [(i, w) for i, w in zip(ids, words) if w.isalpha()]
        encoded = tokenizer([" " + w for _, w in pairs], add_special_tokens=False)["input_ids"]
        kept = [(i, w) for (i, w), e in zip(pairs, encoded) if list(e) == [i]]
        return [i for i, _ in kept], [w for _, w in kept]

    def neighbours(self, word: str) -> List[str]:
        key = word.casefold()
        if key not in self._cache:
            row = self.row_of.get(key)
            found: List[str] = []
            if row is not None:
                sims = self.matrix @ self.matrix[row]
                seen = {key}
                for j in numpy.argsort(-sims, kind="stable")[: self.top_k * 4 + 1]:
                    candidate = self.words[int(j)].casefold()
                    if candidate in seen or sims[j] < self.min_similarity:
                        continue
                    seen.add(candidate)
                    found.append(candidate)
                    if len(found) >= self.top_k:
                        break
            self._cache[key] = found
        return self._cache[key]


@registry.spacy_distill_text_augmenters(SynonymTable.method)
def configure_synonym_table(
    path: Path, n: int = 1, rate: float = 0.15, top_k: int = 5
) -> SynonymTable:
    """Synonyms from a table you supply.

    path (Path): a JSON ({"word": ["synonym", ...]}) or TSV (word<TAB>synonym<TAB>...) file.
    n (int): variants per seed.
    rate (float): the probability that a word with synonyms is replaced.
    top_k (int): the first k synonyms of a word are used.
    RETURNS (SynonymTable): the augmenter.
    """
    return SynonymTable(read_synonym_table(Path(path)), n, rate, top_k, path=str(path))


@registry.spacy_distill_text_augmenters(VectorSynonyms.method)
def configure_vector_synonyms(
    model: str,
    n: int = 1,
    rate: float = 0.15,
    top_k: int = 5,
    min_similarity: float = 0.5,
    pos: List[str] = list(DEFAULT_POS),
) -> VectorSynonyms:
    """Synonyms from a spaCy pipeline's static vectors (e.g. en_core_web_md).

    model (str): the pipeline (package name or path).
    n (int): variants per seed.
    rate (float): the probability that a word with neighbours is replaced.
    top_k (int): the neighbours to choose from.
    min_similarity (float): the least cosine similarity of a neighbour.
    pos (List[str]): parts of speech that may be replaced (when the pipeline tags them).
    RETURNS (VectorSynonyms): the augmenter.
    """
    import spacy

    try:
        nlp = spacy.load(model, exclude=["parser", "ner", "textcat", "textcat_multilabel"])
    except OSError as err:
        raise DistillError(f"{model}: cannot load this spaCy pipeline ({err})") from err
    return VectorSynonyms(nlp, n, rate, top_k, min_similarity, pos, model=str(model))


@registry.spacy_distill_text_augmenters(EmbeddingSynonyms.method)
def configure_embedding_synonyms(
    model: str,
    n: int = 1,
    rate: float = 0.15,
    top_k: int = 5,
    min_similarity: float = 0.3,
    revision: Optional[str] = None,
) -> EmbeddingSynonyms:
    """Synonyms from a Hugging Face model's input embeddings (e.g. the teacher's).

    model (str): a hub name or local folder.
    n (int): variants per seed.
    rate (float): the probability that a word with neighbours is replaced.
    top_k (int): the neighbours to choose from.
    min_similarity (float): the least cosine similarity of a neighbour.
    revision (Optional[str]): a hub revision.
    RETURNS (EmbeddingSynonyms): the augmenter.
    """
    from ..hf.loading import load_model_and_tokenizer

    hf_model, tokenizer = load_model_and_tokenizer("AutoModel", model, revision=revision)
    embeddings = hf_model.get_input_embeddings().weight.detach().float().cpu().numpy()
    del hf_model
    return EmbeddingSynonyms(
        embeddings, tokenizer, n, rate, top_k, min_similarity, model=str(model)
    )
