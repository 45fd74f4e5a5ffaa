"""A teacher that is any spaCy pipeline with a text classifier (e.g. a spacy-transformers one)."""

import hashlib
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy
import spacy
from spacy.language import Language

from ..errors import DistillError, UnsupportedModelError
from ..hidden.extract import resolve_hidden_spec
from ..ml.logits import forward_logits, has_readable_logits
from ..pipeline.textcat_lookup import find_textcat, is_exclusive
from ..probabilities import log_softmax
from ..registry import registry
from ..teacher_protocol import TeacherBase
from .base import LabelMapping


class SpacyTeacher(TeacherBase):
    """Scores texts with a spaCy pipeline's `textcat` / `textcat_multilabel` component.

    Scores are the component's logits (read before its final softmax or sigmoid), so no
    information is lost to clipped probabilities; models whose output layer hides them fall
    back to the logs of `doc.cats`.

    Hidden states come from a spacy-transformers `transformer` component (`doc._.trf_data`); a
    pipeline without one says so when they are asked for.
    """

    supports_hidden = True

    def __init__(
        self,
        nlp: Language,
        *,
        component: Optional[str] = None,
        label_map: Optional[Dict[str, Optional[str]]] = None,
        batch_size: int = 64,
        teacher_id: Optional[str] = None,
    ) -> None:
        """
        nlp (Language): the teacher pipeline.
        component (Optional[str]): the text classifier's name; None picks the only one.
        label_map (Optional[Dict[str, Optional[str]]]): teacher label -> student label (None drops).
        batch_size (int): texts per `nlp.pipe` batch.
        teacher_id (Optional[str]): a readable id; defaults to the pipeline's name and version.
        """
        self.nlp = nlp
        self.component = find_textcat(nlp, component)
        self.pipe = nlp.get_pipe(self.component)
        self.teacher_exclusive = is_exclusive(nlp, self.component)
        if len(self.pipe.labels) < 1:
            raise DistillError(
                f"Teacher component '{self.component}' has no labels; is it trained?"
            )
        self.mapping = LabelMapping(self.pipe.labels, label_map, self.teacher_exclusive)
        self.labels: Tuple[str, ...] = self.mapping.labels
        self.exclusive = self.teacher_exclusive
        self.batch_size = batch_size
        self.label_map = dict(label_map or {})
        self._teacher_id = teacher_id
        self._fingerprint: Optional[str] = None
        self._reads_logits = has_readable_logits(self.pipe.model)
        self._trf_sample: Any = None

    @property
    def teacher_id(self) -> str:
        """A readable id: the pipeline's name and version, plus the start of its fingerprint
        when it has spaCy's default name (every pipeline trained without a meta name is
        `en_pipeline-0.0.0`: two such teachers must not look alike in reports)."""
        if self._teacher_id is None:
            meta = self.nlp.meta
            name = meta.get("name") or "pipeline"
            lang, version = meta.get("lang", self.nlp.lang), meta.get("version", "0.0.0")
            teacher_id = f"spacy:{lang}_{name}-{version}/{self.component}"
            if name == "pipeline":
                teacher_id += f"@{self.fingerprint[:8]}"
            self._teacher_id = teacher_id
        return self._teacher_id

    @property
    def fingerprint(self) -> str:
        """sha256 of the pipeline's weights and config, the component and the label map."""
        if self._fingerprint is None:
            digest = hashlib.sha256()
            digest.update(self.nlp.config.to_str().encode("utf8"))
            for name, proc in self.nlp.pipeline:
                if hasattr(proc, "to_bytes"):
                    digest.update(name.encode("utf8"))
                    digest.update(self._component_bytes(name, proc))
            digest.update(repr((self.component, sorted(self.label_map.items(), key=str))).encode())
            self._fingerprint = digest.hexdigest()
        return self._fingerprint

    def _component_bytes(self, name: str, proc: Any) -> bytes:
        """What identifies a component's weights. A pipeline loaded from a folder is hashed by
        its files there: spacy-transformers' `to_bytes` embeds the temp folder the model was
        unpacked into (the HF config's `_name_or_path`), so it differs in every process and the
        teacher cache would never hit. In-memory pipelines fall back to `to_bytes`."""
        folder = Path(self.nlp.path) / name if self.nlp.path is not None else None
        if folder is None or not folder.is_dir():
            return proc.to_bytes(exclude=["vocab"])
        digest = hashlib.sha256()
        for file in sorted(p for p in folder.rglob("*") if p.is_file()):
            digest.update(file.relative_to(folder).as_posix().encode("utf8") + b"\0")
            with file.open("rb") as content:
                for block in iter(lambda: content.read(1 << 20), b""):
                    digest.update(block)
        return digest.digest()

    @property
    def hf_tokenizer(self) -> Optional[Any]:
        """The Hugging Face tokenizer of the pipeline's spacy-transformers `transformer`, if it
        has one."""
        for _, proc in self.nlp.pipeline:
            tokenizer = getattr(getattr(proc, "model", None), "tokenizer", None)
            if tokenizer is not None and callable(getattr(tokenizer, "get_vocab", None)):
                return tokenizer
        return None

    def score(self, texts: Sequence[str]) -> numpy.ndarray:
        """Teacher scores for texts: log-probabilities (exclusive) or logits (multi-label).

        texts (Sequence[str]): the texts.
        RETURNS (numpy.ndarray): shape (len(texts), len(self.labels)), float32.
        """
        if not texts:
            return numpy.zeros((0, len(self.labels)), dtype="float32")
        # The docs live only in here: a memory zone frees the strings they add to the vocab,
        # which would otherwise grow with every new word of a large corpus.
        with self.nlp.memory_zone():
            return self._score(texts)

    def _score(self, texts: Sequence[str]) -> numpy.ndarray:
        if self._reads_logits:
            docs = list(self.nlp.pipe(texts, batch_size=self.batch_size, disable=[self.component]))
            try:
                logits, _ = forward_logits(self.pipe.model, docs, is_train=False)
                scores = self.pipe.model.ops.to_numpy(logits).astype("float64")
            except UnsupportedModelError:
                self._reads_logits = False
                return self._score(texts)
        else:
            docs = list(self.nlp.pipe(texts, batch_size=self.batch_size))
            probs = numpy.asarray(
                [[doc.cats[label] for label in self.pipe.labels] for doc in docs], dtype="float64"
            )
            probs = numpy.clip(probs, 1e-7, 1 - 1e-7)
            if self.teacher_exclusive:
                scores = numpy.log(probs)
            else:
                scores = numpy.log(probs) - numpy.log1p(-probs)
        if self.teacher_exclusive:
            scores = log_softmax(scores)
        return self.mapping.apply(scores).astype("float32")

    def hidden_settings(
        self,
        *,
        layer: Optional[int] = None,
        last_k: Optional[int] = None,
        pooling: Optional[str] = None,
    ) -> Dict[str, Any]:
        """The hidden-state settings `hidden_states` uses: the pipeline's spacy-transformers
        output (`doc._.trf_data`); layers other than the last need the transformer to return all
        hidden states (`transformer_config = {"output_hidden_states": true}`).

        layer (Optional[int]): the hidden state (-1, the default: the last layer).
        last_k (Optional[int]): average the last k hidden states instead.
        pooling (Optional[str]): "mean" (of the token vectors), "cls" (the first word piece) or
            "last" (the last word piece).
        RETURNS (Dict[str, Any]): layer, last_k, pooling, width and model.
        """
        trf = self._trf_sample
        if trf is None:  # one short text tells the width and the hidden states available
            trf = self._trf_sample = self._trf_data(
                next(iter(self._trf_docs(["A sample text."]))), "a sample text"
            )
        n_states = len(self._all_states(trf, need_all=False)) or 1
        if layer not in (None, -1) or last_k is not None:
            n_states = len(self._all_states(trf, need_all=True))
        spec = resolve_hidden_spec(layer, last_k, pooling, n_states=n_states)
        return {**spec, "width": int(trf.width), "model": self.teacher_id}

    def hidden_states(
        self,
        texts: Sequence[str],
        docs: Optional[Sequence[Any]] = None,
        *,
        level: str = "doc",
        layer: Optional[int] = None,
        last_k: Optional[int] = None,
        pooling: Optional[str] = None,
    ) -> List[Any]:
        """Hidden states from `doc._.trf_data`: spacy-transformers' own alignment of word pieces
        to the pipeline's tokens gives token vectors (mean over each token's pieces), which are
        then matched to the tokens of `docs` by character offsets (the identity when both
        tokenize alike).

        texts (Sequence[str]): the texts.
        docs (Optional[Sequence[Doc]]): their spaCy docs (needed for token-level states).
        level (str): "doc", "token" or "both".
        RETURNS (List[HiddenStates]): one per text.
        """
        from ..hidden.alignment import (
            HiddenStates,
            align_ragged,
            align_to_tokens,
            check_level,
            select_layer,
            token_spans,
        )

        check_level(level)
        spec = self.hidden_settings(layer=layer, last_k=last_k, pooling=pooling)
        want_tokens = level in ("token", "both")
        if want_tokens and (docs is None or len(docs) != len(texts)):
            raise DistillError("token-level hidden states need one spaCy doc per text")
        results = []
        for i, teacher_doc in enumerate(self._trf_docs(list(texts))):
            trf = self._trf_data(teacher_doc, texts[i])
            states = self._all_states(trf, need_all=spec["layer"] != -1)
            state = numpy.asarray(
                select_layer(states, spec["layer"], spec["last_k"]), dtype="float32"
            )
            flat = state.reshape(-1, state.shape[-1])
            indices = numpy.asarray(_to_numpy(trf.align.dataXd), dtype="int64").reshape(-1)
            lengths = numpy.asarray(_to_numpy(trf.align.lengths), dtype="int64")
            vectors, mask = align_ragged(flat, lengths, indices)
            result = HiddenStates(n_pieces=int(len(numpy.unique(indices))))
            if level in ("doc", "both"):
                if spec["pooling"] == "mean":
                    result.doc = (
                        vectors[mask].mean(axis=0)
                        if mask.any()
                        else numpy.zeros(flat.shape[1], "float32")
                    )
                elif spec["pooling"] == "cls":
                    result.doc = flat[0].copy()
                else:
                    result.doc = (
                        flat[int(indices.max())].copy() if len(indices) else flat[-1].copy()
                    )
            if want_tokens:
                own = token_spans(teacher_doc)
                keep = numpy.flatnonzero(mask)
                result.tokens, result.token_mask = align_to_tokens(
                    texts[i],
                    token_spans(docs[i]),
                    [own[k] for k in keep],
                    vectors[keep],  # type: ignore[index]
                )
            results.append(result)
        return results

    def _trf_docs(self, texts: List[str]):
        return self.nlp.pipe(texts, batch_size=self.batch_size, disable=[self.component])

    def _trf_data(self, doc: Any, text: str) -> Any:
        trf = getattr(doc._, "trf_data", None) if doc.has_extension("trf_data") else None
        if trf is None or not hasattr(trf, "align"):
            raise DistillError(
                f"teacher {self.teacher_id}: the pipeline sets no doc._.trf_data (text {text[:40]!r}); "
                "hidden states come from spaCy pipelines with a spacy-transformers `transformer` "
                "component. Annotate without --hidden for this teacher"
            )
        return trf

    def _all_states(self, trf: Any, need_all: bool) -> List[Any]:
        output = trf.model_output
        hidden = output.get("hidden_states") if hasattr(output, "get") else None
        if hidden:
            return [_to_numpy(state) for state in hidden]
        if need_all:
            raise DistillError(
                f"teacher {self.teacher_id}: a hidden layer other than the last needs all hidden "
                'states; set transformer_config = {"output_hidden_states": true} in '
                "[components.transformer.model] of the teacher pipeline"
            )
        return [_to_numpy(output["last_hidden_state"])]


def _to_numpy(array: Any) -> numpy.ndarray:
    if hasattr(array, "detach"):  # torch
        return array.detach().float().cpu().numpy()
    if type(array).__module__.startswith("cupy"):
        return array.get()
    return numpy.asarray(array)


@registry.spacy_distill_teachers("spacy-distill.SpacyTeacher.v1")
def configure_spacy_teacher(
    model: str,
    component: Optional[str] = None,
    label_map: Optional[Dict[str, Optional[str]]] = None,
    batch_size: int = 64,
) -> SpacyTeacher:
    """A spaCy pipeline with a text classifier, as a teacher.

    model (str): a pipeline package name or a path to a pipeline directory.
    component (Optional[str]): the text classifier to read; None picks the only one.
    label_map (Optional[Dict[str, Optional[str]]]): teacher label -> student label (None drops).
    batch_size (int): texts per batch.
    RETURNS (SpacyTeacher): the teacher.
    """
    nlp = spacy.load(model)
    try:
        return SpacyTeacher(nlp, component=component, label_map=label_map, batch_size=batch_size)
    except DistillError as err:
        raise DistillError(
            f"teacher {model}: {err}"
        ) from err  # which pipeline, for the CLI's one line
