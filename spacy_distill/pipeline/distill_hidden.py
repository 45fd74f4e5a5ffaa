"""`distill_hidden`: a training-only component that teaches the student's shared tok2vec the
teacher's hidden states.

It listens to the student's `tok2vec` (a `spacy.Tok2VecListener.v1`), maps the token vectors
to the teacher's width (`spacy-distill.HiddenProjector.v1`, per doc after mean pooling or per
token) and adds `spacy-distill.HiddenStateLoss.v1` against the states that `spacy-distill
annotate --hidden` stored in the target file. Its gradient flows through the listener into the
tok2vec that the text classifier shares. At inference it passes docs through untouched and
scores nothing; `spacy-distill export` drops it (`is_training_only`).
"""

from itertools import islice
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Tuple

import numpy
from spacy.language import Language
from spacy.pipeline import TrainablePipe
from spacy.pipeline.tok2vec import Tok2VecListener
from spacy.tokens import Doc
from spacy.training import Example, validate_get_examples
from thinc.api import Config, Model, Optimizer

from ..data.targets import USER_DATA_KEY
from ..errors import DistillError
from ..hidden.model import HiddenStateLoss
from ..hidden.storage import StoredHidden, decode_hidden
from .training_step import describe_example, update_step

DEFAULT_HIDDEN_MODEL_STR = """
[model]
@architectures = "spacy-distill.HiddenProjector.v1"
nO = null
level = "doc"
kind = "linear"
nP = 3

[model.tok2vec]
@architectures = "spacy.Tok2VecListener.v1"
width = 64
upstream = "*"
"""

DEFAULT_HIDDEN_LOSS_STR = """
[loss]
@losses = "spacy-distill.HiddenStateLoss.v1"
kind = "mse"
weight = 1.0
"""

DEFAULT_HIDDEN_MODEL = Config().from_str(DEFAULT_HIDDEN_MODEL_STR)["model"]
DEFAULT_HIDDEN_LOSS = Config().from_str(DEFAULT_HIDDEN_LOSS_STR)["loss"]


@Language.factory(
    "distill_hidden",
    default_config={
        "model": DEFAULT_HIDDEN_MODEL,
        "loss": DEFAULT_HIDDEN_LOSS,
        "allow_missing": False,
    },
    default_score_weights={},
)
def make_distill_hidden(
    nlp: Language, name: str, model: Model, loss: HiddenStateLoss, allow_missing: bool
) -> "DistillHidden":
    """Hidden-state distillation into the student's shared tok2vec (training only).

    model (Model): a `spacy-distill.HiddenProjector.v1` over a `spacy.Tok2VecListener.v1`.
    loss (HiddenStateLoss): the distance to the teacher's states (mse, cosine or both; weight).
    allow_missing (bool): skip docs without stored hidden states instead of failing.
    """
    return DistillHidden(nlp.vocab, model, name, loss=loss, allow_missing=allow_missing)


class DistillHidden(TrainablePipe):
    """Learns nothing it keeps: its loss trains the tok2vec it listens to."""

    is_training_only = True

    def __init__(
        self,
        vocab,
        model: Model,
        name: str = "distill_hidden",
        *,
        loss: HiddenStateLoss,
        allow_missing: bool = False,
    ) -> None:
        """
        vocab (Vocab): the shared vocabulary.
        model (Model): the projector (see `spacy-distill.HiddenProjector.v1`).
        name (str): the component name.
        loss (HiddenStateLoss): the loss.
        allow_missing (bool): skip docs without stored states instead of failing.
        """
        self.vocab = vocab
        self.model = model
        self.name = name
        self.loss = loss
        self.cfg: Dict[str, Any] = {"allow_missing": bool(allow_missing), "signature": None}
        self.level = model.attrs.get("hidden_level")
        if self.level not in ("doc", "token"):
            raise DistillError(
                f"Component '{name}': its model must be a spacy-distill.HiddenProjector.v1 "
                f"(with level 'doc' or 'token'), got '{model.name}'"
            )

    @property
    def is_distillable(self) -> bool:
        return False

    @property
    def width(self) -> Optional[int]:
        projection = self.model.get_ref("projection")
        return projection.get_dim("nO") if projection.has_dim("nO") else None

    # --- inference: nothing ---------------------------------------------------------------

    def __call__(self, doc: Doc) -> Doc:
        return doc

    def pipe(self, stream: Iterable[Doc], *, batch_size: int = 128) -> Iterator[Doc]:
        yield from stream

    def predict(self, docs: Iterable[Doc]) -> None:
        return None

    def set_annotations(self, docs: Iterable[Doc], scores: Any) -> None:
        return None

    def score(self, examples: Iterable[Example], **kwargs) -> Dict[str, Any]:
        return {}

    # --- training -------------------------------------------------------------------------

    def initialize(
        self, get_examples: Callable[[], Iterable[Example]], *, nlp: Optional[Language] = None
    ) -> None:
        """Check the student can take hidden states, and read the teacher's width from the
        stored states (or check it against the configured nO).

        get_examples (Callable[[], Iterable[Example]]): returns the training examples.
        nlp (Optional[Language]): the pipeline (to find the tok2vec this component listens to).
        """
        validate_get_examples(get_examples, f"{type(self).__name__}.initialize")
        self._check_listener(nlp)
        stored, where = None, None
        docs = []
        for i, eg in enumerate(islice(get_examples(), 1000)):
            docs.append(eg.predicted)
            if stored is None:
                hidden = _hidden_field(eg.reference)
                if hidden is not None:
                    where = describe_example(eg, i)
                    stored = decode_hidden(hidden, where, n_tokens=len(eg.reference))
        if stored is None:
            raise DistillError(
                f"Component '{self.name}': none of the first training examples has stored "
                f"hidden states (field 'hidden' of doc.user_data[{USER_DATA_KEY!r}]); annotate "
                f"the training data with `spacy-distill annotate --hidden {self.level}`"
            )
        self._check_level(stored, where)  # type: ignore[arg-type]
        projection = self.model.get_ref("projection")
        if projection.has_dim("nO") and projection.get_dim("nO") not in (None, stored.width):
            raise DistillError(
                f"Component '{self.name}': the projector maps to nO = {projection.get_dim('nO')} "
                f"dims, but the stored hidden states (field 'hidden', {where}) have width "
                f"{stored.width}; set nO = {stored.width} (or null) in "
                f"[components.{self.name}.model]"
            )
        projection.set_dim("nO", stored.width)
        self.cfg["signature"] = stored.signature
        self.model.initialize(X=docs[:10] or None)

    def update(
        self,
        examples: Iterable[Example],
        *,
        drop: float = 0.0,
        sgd: Optional[Optimizer] = None,
        losses: Optional[Dict[str, float]] = None,
    ) -> Dict[str, float]:
        """Add the hidden-state loss of a batch (states read from `eg.reference`); its gradient
        reaches the shared tok2vec. Arguments and result: see `training_step.update_step`."""
        # Always run forward and backward, even for a batch without states: when this is the
        # tok2vec's last listener, its backprop is what sends every listener's gradient on.
        return update_step(
            self, examples, self.model.begin_update, drop=drop, sgd=sgd, losses=losses
        )

    def get_loss(self, examples: Iterable[Example], guesses: Any) -> Tuple[float, Any]:
        """The hidden-state loss of a batch.

        examples (Iterable[Example]): the batch.
        guesses: the projector's output: (n_docs, width) at doc level, one (n_tokens, width)
            array per doc at token level.
        RETURNS (Tuple[float, Any]): the loss and its gradient, shaped like `guesses`.
        """
        examples = list(examples)
        ops = self.model.ops
        width = self.width
        if self.level == "doc":
            target, mask = self._doc_truths(examples, width)
            d_guesses, loss = self.loss(guesses, (ops.asarray2f(target), mask))
            return loss, d_guesses
        lengths = [len(g) for g in guesses]
        flat = ops.xp.concatenate(guesses, axis=0) if guesses else ops.alloc2f(0, width)
        target, mask = self._token_truths(examples, width)
        d_flat, loss = self.loss(flat, (ops.asarray2f(target), mask))
        d_guesses, start = [], 0
        for length in lengths:
            d_guesses.append(d_flat[start : start + length])
            start += length
        return loss, d_guesses

    def _stored(self, eg: Example, index: int) -> Optional[StoredHidden]:
        hidden = _hidden_field(eg.reference)
        where = describe_example(eg, index)
        if hidden is None:
            if self.cfg.get("allow_missing"):
                return None
            raise DistillError(
                f"{where}: field 'hidden': missing; component '{self.name}' needs the teacher's "
                f"{self.level}-level hidden states on every doc: annotate with "
                f"`spacy-distill annotate --hidden {self.level}` (or set allow_missing = true in "
                f"[components.{self.name}])"
            )
        stored = decode_hidden(hidden, where, n_tokens=len(eg.reference))
        self._check_level(stored, where)
        if stored.width != self.width:
            raise DistillError(
                f"{where}: field 'hidden': width {stored.width} differs from the {self.width} "
                f"dims component '{self.name}' maps to; annotate every file with the same "
                "teacher, layer and --hidden-dims/--hidden-projection"
            )
        signature = self.cfg.get("signature")
        if signature is not None and stored.signature != signature:
            raise DistillError(
                f"{where}: field 'hidden': made with other settings ({stored.signature}) than the "
                f"first training docs ({signature}); component '{self.name}' needs one teacher, "
                "layer, pooling and projection for the whole corpus"
            )
        return stored

    def _check_level(self, stored: StoredHidden, where: str) -> None:
        if self.level == "doc" and stored.doc is None:
            raise DistillError(
                f"{where}: field 'hidden': holds token-level states only, but component "
                f"'{self.name}' is doc-level; annotate with --hidden doc (or both), or use "
                'level = "token" in its model'
            )
        if self.level == "token" and stored.tokens is None:
            raise DistillError(
                f"{where}: field 'hidden': holds doc-level states only, but component "
                f"'{self.name}' is token-level; annotate with --hidden token (or both), or use "
                'level = "doc" in its model'
            )

    def _doc_truths(
        self, examples: List[Example], width: int
    ) -> Tuple[numpy.ndarray, numpy.ndarray]:
        target = numpy.zeros((len(examples), width), dtype="float32")
        mask = numpy.zeros((len(examples),), dtype="float32")
        for i, eg in enumerate(examples):
            stored = self._stored(eg, i)
            # An empty doc has no student token to pool: it teaches nothing.
            if stored is not None and len(eg.predicted):
                target[i] = stored.doc
                mask[i] = 1.0
        return target, mask

    def _token_truths(
        self, examples: List[Example], width: int
    ) -> Tuple[numpy.ndarray, numpy.ndarray]:
        targets, masks = [], []
        for i, eg in enumerate(examples):
            n_tokens = len(eg.predicted)
            stored = self._stored(eg, i)
            if stored is None:
                targets.append(numpy.zeros((n_tokens, width), dtype="float32"))
                masks.append(numpy.zeros((n_tokens,), dtype="float32"))
                continue
            vectors, covered = stored.tokens, stored.token_mask
            if n_tokens == len(eg.reference) and all(
                p.idx == r.idx and p.text == r.text for p, r in zip(eg.predicted, eg.reference)
            ):
                targets.append(vectors)
                masks.append(covered.astype("float32"))
                continue
            # The student tokenizes differently: average the reference tokens each of its
            # tokens aligns to (spaCy's character-based alignment).
            x2y = eg.alignment.x2y
            lengths, data = numpy.asarray(x2y.lengths), numpy.asarray(x2y.data)
            target = numpy.zeros((n_tokens, width), dtype="float32")
            mask = numpy.zeros((n_tokens,), dtype="float32")
            start = 0
            for t, length in enumerate(lengths):
                ref = data[start : start + length]
                ref = ref[covered[ref]]
                if len(ref):
                    target[t] = vectors[ref].mean(axis=0)
                    mask[t] = 1.0
                start += length
            targets.append(target)
            masks.append(mask)
        if not targets:
            return numpy.zeros((0, width), dtype="float32"), numpy.zeros((0,), dtype="float32")
        return numpy.concatenate(targets), numpy.concatenate(masks)

    def _check_listener(self, nlp: Optional[Language]) -> None:
        listeners = [node for node in self.model.walk() if isinstance(node, Tok2VecListener)]
        if not listeners:
            raise DistillError(
                f"Component '{self.name}': its model has no spacy.Tok2VecListener.v1, so the "
                "hidden loss would train a tok2vec that no other component uses; set "
                f"[components.{self.name}.model.tok2vec] to a listener on the student's tok2vec"
            )
        if nlp is None:
            return
        upstream = [
            name
            for name, pipe in nlp.pipeline
            if any(listener in getattr(pipe, "listeners", []) for listener in listeners)
        ]
        if not upstream:
            raise DistillError(
                f"Component '{self.name}': no tok2vec component in the pipeline {nlp.pipe_names} "
                "feeds its listener. Hidden-state distillation trains the student's shared "
                "tok2vec, so the student needs one (a BOW textcat has none): use "
                "`spacy-distill init-config --arch cnn` or `--arch ensemble` with --hidden"
            )


def _hidden_field(doc: Doc) -> Optional[Dict[str, Any]]:
    data = doc.user_data.get(USER_DATA_KEY)
    if not isinstance(data, dict):
        return None
    return data.get("hidden")


__all__ = ["DistillHidden", "make_distill_hidden"]
