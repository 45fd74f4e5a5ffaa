"""What gives hidden states, and the layer, last_k and pooling they are read with.

A teacher gives hidden states when it says so (`TeacherBase.supports_hidden`); a teacher written
without `TeacherBase` does when it implements `HiddenStateTeacher`. The states of Hugging Face
models are read by `spacy_distill.hf.features`.
"""

from typing import Any, Dict, List, Optional, Protocol, Sequence, runtime_checkable

from ..errors import DistillError
from ..teacher_protocol import TeacherBase
from .alignment import POOLINGS, HiddenStates


@runtime_checkable
class HiddenStateTeacher(Protocol):
    """A teacher that can give its hidden states (the optional part of the teacher protocol).

    `spacy-distill annotate --hidden` asks for these; a teacher without them cannot be used for
    hidden-state distillation.
    """

    def hidden_settings(
        self,
        *,
        layer: Optional[int] = None,
        last_k: Optional[int] = None,
        pooling: Optional[str] = None,
    ) -> Dict[str, Any]:
        """The resolved settings (`layer`, `last_k`, `pooling`, `width`, `model`) that
        `hidden_states` uses with these arguments (None: the teacher's defaults)."""
        ...

    def hidden_states(
        self,
        texts: Sequence[str],
        docs: Optional[Sequence[Any]] = None,
        *,
        level: str = "doc",
        layer: Optional[int] = None,
        last_k: Optional[int] = None,
        pooling: Optional[str] = None,
    ) -> List[HiddenStates]:
        """One `HiddenStates` per text; token-level vectors are aligned to the tokens of `docs`."""
        ...


def gives_hidden_states(source: Any) -> bool:
    """Whether `source` gives hidden states: a `TeacherBase` says so in `supports_hidden` (the
    base class has the methods, and they refuse); anything else (a teacher written without
    `TeacherBase`, the probe's `HiddenStateExtractor`) has them when it implements
    `HiddenStateTeacher`."""
    if isinstance(source, TeacherBase):
        return source.supports_hidden
    return isinstance(source, HiddenStateTeacher)


def require_hidden_teacher(teacher: Any) -> HiddenStateTeacher:
    """The teacher, if it can give hidden states; else a DistillError that says which can."""
    if not gives_hidden_states(teacher):
        raise DistillError(
            f"teacher {teacher.teacher_id} ({type(teacher).__name__}) has no hidden states to distil: it lacks "
            "a `hidden_states` method. Hidden states come from HF classifiers "
            "(spacy-distill.HFClassifierTeacher.v1), HF causal LMs and probes "
            "(HFPromptTeacher, HFProbeTeacher) and spaCy pipelines with a spacy-transformers "
            "`transformer` (SpacyTeacher); annotate the others without `hidden`"
        )
    return teacher


def resolve_hidden_spec(
    layer: Optional[int],
    last_k: Optional[int],
    pooling: Optional[str],
    *,
    default_layer: int = -1,
    default_last_k: Optional[int] = None,
    default_pooling: str = "mean",
    n_states: int,
) -> Dict[str, Any]:
    """The layer, last_k and pooling to use: the ones asked for, else the teacher's defaults.
    Giving `layer` drops a default last_k and the other way round."""
    if layer is not None and last_k is not None:
        raise DistillError(f"give either a hidden layer ({layer}) or last_k ({last_k}), not both")
    if layer is None and last_k is None:
        layer, last_k = (
            (None, default_last_k) if default_last_k is not None else (default_layer, None)
        )
    pooling = pooling or default_pooling
    if pooling not in POOLINGS:
        raise DistillError(f"hidden pooling must be one of {POOLINGS}, got {pooling!r}")
    if last_k is not None and not (isinstance(last_k, int) and 1 <= last_k <= n_states):
        raise DistillError(
            f"last_k must be between 1 and {n_states} (the hidden states), got {last_k!r}"
        )
    if layer is not None and not (isinstance(layer, int) and -n_states <= layer < n_states):
        raise DistillError(
            f"hidden layer {layer!r} is out of range: the model has {n_states} hidden states "
            f"(0 = embeddings ... {n_states - 1} = last layer; or -1 ... -{n_states})"
        )
    return {"layer": layer, "last_k": last_k, "pooling": pooling}


def __getattr__(name: str) -> Any:
    # `hf_hidden_states` moved to `spacy_distill.hf.features`; read through here for the modules
    # that still import it from the old place (looked up lazily: hf.features imports this module).
    if name == "hf_hidden_states":
        from ..hf.features import hf_hidden_states

        return hf_hidden_states
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
