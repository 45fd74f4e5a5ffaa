"""A teacher made of any Hugging Face model's pooled hidden states and a linear head (a probe)
fitted on the gold examples at hand.

The features come from `HiddenStateExtractor` (`spacy_distill.hf.extractor`), the head is a
`ProbeHead` (`probe_head`), fitted and checked by `probe_training`. torch, transformers and
scikit-learn are imported where they are used, never when this module is imported.
"""

import hashlib
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy

from ..errors import DistillError
from ..hf.extractor import HiddenStateExtractor, pool_hidden_states  # noqa: F401 (re-exported)
from ..hf.loading import truncation_stats
from ..probabilities import log_softmax
from ..registry import registry
from ..teacher_protocol import TeacherBase
from .probe_head import DEFAULT_C, HEAD_META, ProbeHead
from .probe_training import check_probe_head, fit_probe_head


class HFProbeTeacher(TeacherBase):
    """Scores texts with a linear probe on a Hugging Face model's pooled hidden states.

    The head is read from `head` when that folder exists; otherwise it is fitted on the gold
    labels of `train_data` and, if `head` is given, saved there. A saved head records the
    extractor settings and the training data's sha256, and refuses to load with others.
    Exclusive heads give log-probabilities (log-softmax of the logits), multi-label heads logits.
    """

    supports_hidden = True

    def __init__(
        self,
        extractor: HiddenStateExtractor,
        *,
        head: Optional[Union[str, Path]] = None,
        train_data: Optional[Union[str, Path]] = None,
        labels: Optional[Sequence[str]] = None,
        multi_label: bool = False,
        regularization: float = DEFAULT_C,
        teacher_id: Optional[str] = None,
    ) -> None:
        """
        extractor (HiddenStateExtractor): the feature extractor.
        head (Optional[Union[str, Path]]): a head folder: read if it exists, else written after
            fitting.
        train_data (Optional[Union[str, Path]]): JSONL/CSV records with gold labels to fit the
            head on when `head` does not exist yet.
        labels (Optional[Sequence[str]]): the label order; None: the sorted gold labels.
        multi_label (bool): one binary logistic regression per label.
        regularization (float): C of the logistic regression (inverse L2 strength; smaller is
            stronger). Tune it on dev data.
        teacher_id (Optional[str]): a readable id; defaults to "hf-probe:<model>/<layer>/<pooling>".
        """
        self.extractor = extractor
        self.batch_size = extractor.batch_size
        self.multi_label = bool(multi_label)
        self.exclusive = not self.multi_label
        self.regularization = float(regularization)
        head_path = Path(head) if head is not None else None
        if head_path is not None and (head_path / HEAD_META).exists():
            self.head = ProbeHead.from_disk(head_path)
            check_probe_head(
                self.head,
                head_path,
                extractor,
                train_data=train_data,
                labels=labels,
                multi_label=self.multi_label,
                regularization=self.regularization,
            )
        elif train_data is not None:
            self.head = fit_probe_head(
                extractor,
                Path(train_data),
                labels,
                multi_label=self.multi_label,
                regularization=self.regularization,
            )
            if head_path is not None:
                self.head.to_disk(head_path)
        elif head_path is not None:
            raise DistillError(
                f"{head_path}: no probe head there (no {HEAD_META}); give train_data to fit one"
            )
        else:
            raise DistillError("HFProbeTeacher needs a saved head or train_data to fit one")
        self.labels: Tuple[str, ...] = self.head.labels
        layer = f"last{extractor.last_k}" if extractor.last_k else f"layer{extractor.layer}"
        self.teacher_id = teacher_id or (
            f"hf-probe:{extractor.model_id}"
            + (f"@{extractor.revision}" if extractor.revision else "")
            + f"/{layer}/{extractor.pooling}"
        )

    @property
    def fingerprint(self) -> str:
        """sha256 of the extractor's fingerprint and the head's hash."""
        return hashlib.sha256(f"{self.extractor.fingerprint}:{self.head.hash}".encode()).hexdigest()

    @property
    def settings(self) -> Dict[str, Any]:
        """`HiddenStateExtractor.settings`: what decides the features the head reads."""
        return self.extractor.settings

    @property
    def width(self) -> int:
        """The number of features (the model's hidden size)."""
        return self.extractor.width

    @property
    def hf_tokenizer(self) -> Any:
        """The model's Hugging Face tokenizer."""
        return self.extractor.tokenizer

    def features(self, texts: Sequence[str]) -> numpy.ndarray:
        """Pooled hidden states, (len(texts), width) float32: `HiddenStateExtractor.features`."""
        return self.extractor.features(texts)

    def hidden_settings(self, **kwargs: Any) -> Dict[str, Any]:
        """`HiddenStateExtractor.hidden_settings` of the extractor."""
        return self.extractor.hidden_settings(**kwargs)

    def hidden_states(
        self, texts: Sequence[str], docs: Optional[Sequence[Any]] = None, **kwargs: Any
    ) -> List[Any]:
        """`HiddenStateExtractor.hidden_states` of the extractor: the states the probe reads."""
        return self.extractor.hidden_states(texts, docs, **kwargs)

    def score(self, texts: Sequence[str]) -> numpy.ndarray:
        """Teacher scores for texts: log-probabilities (exclusive) or logits (multi-label).

        texts (Sequence[str]): the texts.
        RETURNS (numpy.ndarray): shape (len(texts), len(self.labels)), float32.
        """
        texts = list(texts)
        if not texts:
            return numpy.zeros((0, len(self.labels)), dtype="float32")
        logits = self.head.logits(self.features(texts))
        scores = logits if self.multi_label else log_softmax(logits)
        return scores.astype("float32")

    def stats(self) -> Dict[str, Any]:
        """Counters since the teacher was built: texts scored and texts truncated."""
        extractor = self.extractor
        return truncation_stats(extractor.n_scored, extractor.n_truncated, extractor.max_length)


@registry.spacy_distill_teachers("spacy-distill.HFProbeTeacher.v1")
def configure_hf_probe_teacher(
    model: str,
    gguf_file: Optional[str] = None,
    revision: Optional[str] = None,
    layer: int = -1,
    last_k: Optional[int] = None,
    pooling: str = "mean",
    head: Optional[str] = None,
    train_data: Optional[str] = None,
    labels: Optional[List[str]] = None,
    multi_label: bool = False,
    regularization: float = DEFAULT_C,
    max_length: Optional[int] = None,
    device: str = "auto",
    dtype: str = "auto",
    batch_size: int = 32,
    allow_pickle: bool = False,
) -> HFProbeTeacher:
    """A linear probe on a Hugging Face model's pooled hidden states, fitted on gold examples.

    model (str): a hub name, a local model directory, a GGUF file's folder or a .gguf path.
    gguf_file (Optional[str]): the GGUF file inside `model`.
    revision (Optional[str]): a hub revision.
    layer (int): the hidden state to probe (0: embeddings, -1: last layer, negative from the end).
    last_k (Optional[int]): average the last k layers instead (leave layer at -1).
    pooling (str): "mean" (real tokens), "cls" (first token) or "last" (last real token, for
        causal LMs).
    head (Optional[str]): the head folder: loaded if it exists, else written after fitting.
    train_data (Optional[str]): JSONL/CSV with gold labels, to fit the head when it does not exist.
    labels (Optional[List[str]]): the label order; None: the sorted gold labels.
    multi_label (bool): one binary logistic regression per label instead of a multinomial one.
    regularization (float): C of the logistic regression (inverse L2 strength; smaller is
        stronger). Tune it on dev data.
    max_length (Optional[int]): tokens per text; None: the tokenizer's limit, at most 512.
    device (str): "cpu", "cuda", "cuda:N" or "auto".
    dtype (str): "auto" (float32), "float32", "float16" or "bfloat16".
    batch_size (int): texts per forward pass.
    allow_pickle (bool): load pickled weights (`pytorch_model.bin`, which can run code when
        loaded) when the model has no safetensors; only for a model you trust.
    RETURNS (HFProbeTeacher): the teacher.
    """
    extractor = HiddenStateExtractor(
        model,
        gguf_file=gguf_file,
        revision=revision,
        layer=layer,
        last_k=last_k,
        pooling=pooling,
        max_length=max_length,
        device=device,
        dtype=dtype,
        batch_size=batch_size,
        allow_pickle=allow_pickle,
    )
    return HFProbeTeacher(
        extractor,
        head=head,
        train_data=train_data,
        labels=labels,
        multi_label=multi_label,
        regularization=regularization,
    )
