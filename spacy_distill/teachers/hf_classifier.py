"""A teacher that is any Hugging Face sequence classifier (`AutoModelForSequenceClassification`).

torch and transformers are imported when a teacher is built (through `hf.loading`), never when
this module is imported.
"""

from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy

from ..arguments import check_int_argument
from ..errors import DistillError, LabelMismatchError
from ..hf.features import HFHiddenStates
from ..hf.loading import (
    check_device,
    fingerprint_of,
    load_model_and_tokenizer,
    require_transformers,
    resolve_max_length,
    truncation_stats,
)
from ..probabilities import log_softmax
from ..registry import registry
from ..teacher_protocol import TeacherBase
from .base import LabelMapping


class HFClassifierTeacher(HFHiddenStates, TeacherBase):
    """Scores texts with a Hugging Face sequence classifier.

    Labels come from the model config's `id2label`. Exclusive models give log-probabilities
    (log-softmax of the logits); multi-label models give their logits unchanged. Each call to
    `score` sorts its texts by token length, runs them in batches of `batch_size` (so each batch
    pads to a similar length), and returns the rows in the original order. Its hidden states
    (`HFHiddenStates`) default to the last layer and mean pooling.
    """

    def __init__(
        self,
        model: str,
        *,
        revision: Optional[str] = None,
        label_map: Optional[Dict[str, Optional[str]]] = None,
        multi_label: Optional[bool] = None,
        max_length: Optional[int] = None,
        device: str = "auto",
        dtype: str = "auto",
        batch_size: int = 32,
        teacher_id: Optional[str] = None,
        allow_pickle: bool = False,
    ) -> None:
        """
        model (str): a hub name or a local model directory.
        revision (Optional[str]): a hub revision (branch, tag or commit).
        label_map (Optional[Dict[str, Optional[str]]]): teacher label -> student label (None drops).
        multi_label (Optional[bool]): None reads it from the config
            (`problem_type == "multi_label_classification"`).
        max_length (Optional[int]): tokens per text, longer texts are truncated (and counted);
            None: the tokenizer's `model_max_length`, at most 512 and at most the model's
            `max_position_embeddings`.
        device (str): "cpu", "cuda", "cuda:N" or "auto".
        dtype (str): "auto" (float32), "float32", "float16" or "bfloat16".
        batch_size (int): texts per forward pass.
        teacher_id (Optional[str]): a readable id; defaults to "hf:<model>[@<revision>]".
        allow_pickle (bool): load pickled weights (`pytorch_model.bin`, which can run code when
            loaded) when the model has no safetensors; only for a model you trust.
        """
        check_int_argument("batch_size", batch_size, 1)
        check_device(device)
        self.model_name = str(model)
        self.revision = revision
        self.dtype = dtype
        self.batch_size = batch_size
        self.model, self.tokenizer = load_model_and_tokenizer(
            "AutoModelForSequenceClassification",
            self.model_name,
            revision=revision,
            dtype=dtype,
            device=device,
            # False leaves it to the environment (SPACY_DISTILL_ALLOW_PICKLE).
            allow_pickle=True if allow_pickle else None,
        )
        self.device = str(self.model.device)
        config = self.model.config
        self.teacher_labels = _labels_from_config(config, self.model_name)
        if multi_label is None:
            multi_label = getattr(config, "problem_type", None) == "multi_label_classification"
        self.multi_label = bool(multi_label)
        if not self.multi_label and len(self.teacher_labels) < 2:
            raise LabelMismatchError(
                f"{self.model_name}: the model has a single output ({self.teacher_labels[0]!r}, "
                f"problem_type={getattr(config, 'problem_type', None)!r}); an exclusive teacher "
                "needs two labels or more. Set multi_label = true to read it as one binary label."
            )
        self.exclusive = not self.multi_label
        self.label_map = dict(label_map or {})
        self.mapping = LabelMapping(self.teacher_labels, self.label_map, self.exclusive)
        self.labels: Tuple[str, ...] = self.mapping.labels
        self.max_length = resolve_max_length(
            self.model, self.tokenizer, max_length, self.model_name, minimum=2
        )
        self._ensure_padding()
        self.teacher_id = teacher_id or (
            f"hf:{self.model_name}" + (f"@{revision}" if revision else "")
        )
        self.n_scored = 0
        self.n_truncated = 0
        self._fingerprint: Optional[str] = None

    @property
    def fingerprint(self) -> str:
        """sha256 of the model (name, revision, resolved hub commit, local files' names, sizes and
        times), its labels, the label map, exclusivity, max_length and dtype."""
        if self._fingerprint is None:
            local = Path(self.model_name).exists()
            self._fingerprint = fingerprint_of(
                [
                    "spacy-distill.HFClassifierTeacher.v1",
                    self.model_name,
                    self.revision,
                    getattr(self.model.config, "_commit_hash", None),
                    list(self.teacher_labels),
                    sorted(self.label_map.items(), key=str),
                    self.exclusive,
                    self.max_length,
                    self.dtype,
                ],
                model_files=self.model_name if local else None,
            )
        return self._fingerprint

    def stats(self) -> Dict[str, Any]:
        """Counters since the teacher was built: texts scored and texts truncated.

        RETURNS (Dict[str, Any]): n_scored, n_truncated, truncated_share, max_length.
        """
        return truncation_stats(self.n_scored, self.n_truncated, self.max_length)

    def score(self, texts: Sequence[str]) -> numpy.ndarray:
        """Teacher scores for texts: log-probabilities (exclusive) or logits (multi-label).

        texts (Sequence[str]): the texts.
        RETURNS (numpy.ndarray): shape (len(texts), len(self.labels)), float32.
        """
        texts = list(texts)
        if not texts:
            return numpy.zeros((0, len(self.labels)), dtype="float32")
        torch, _ = require_transformers()
        # Untruncated lengths: they count truncation and order the texts by length.
        full = self.tokenizer(texts, truncation=False, verbose=False)["input_ids"]
        lengths = numpy.asarray([len(ids) for ids in full])
        order = numpy.argsort(-numpy.minimum(lengths, self.max_length), kind="stable")
        logits = numpy.zeros((len(texts), len(self.teacher_labels)), dtype="float64")
        with torch.inference_mode():
            for start in range(0, len(texts), self.batch_size):
                index = order[start : start + self.batch_size]
                logits[index] = self._forward([texts[i] for i in index])
        self.n_scored += len(texts)
        self.n_truncated += int((lengths > self.max_length).sum())
        scores = logits if self.multi_label else log_softmax(logits)
        return self.mapping.apply(scores).astype("float32")

    def _forward(self, texts: List[str]) -> numpy.ndarray:
        encoded = self.tokenizer(
            texts,
            truncation=True,
            max_length=self.max_length,
            padding=True,
            return_tensors="pt",
        ).to(self.model.device)
        output = self.model(**encoded)
        return output.logits.float().cpu().numpy().astype("float64")

    def _ensure_padding(self) -> None:
        # Decoder-style classifiers (GPT-2, Llama...) ship without a pad token; batching needs
        # one, and the model must know it to find each text's last real token.
        if self.tokenizer.pad_token is None:
            if self.tokenizer.eos_token is None:
                raise DistillError(
                    f"{self.model_name}: the tokenizer has neither a pad nor an eos token, so "
                    "texts cannot be batched"
                )
            self.tokenizer.pad_token = self.tokenizer.eos_token
        if getattr(self.model.config, "pad_token_id", None) is None:
            self.model.config.pad_token_id = self.tokenizer.pad_token_id


def _labels_from_config(config: Any, name: str) -> Tuple[str, ...]:
    raw = getattr(config, "id2label", None) or {}
    id2label = {int(key): str(value) for key, value in raw.items()}
    num_labels = getattr(config, "num_labels", len(id2label))
    if sorted(id2label) != list(range(num_labels)):
        raise LabelMismatchError(
            f"{name}: config.id2label has ids {sorted(id2label)}, but the model has "
            f"{num_labels} outputs; fix id2label in its config.json"
        )
    labels = tuple(id2label[i] for i in range(num_labels))
    duplicates = sorted({label for label in labels if labels.count(label) > 1})
    if duplicates:
        raise LabelMismatchError(
            f"{name}: config.id2label names {duplicates} more than once; give each output its "
            "own name in config.json"
        )
    return labels


@registry.spacy_distill_teachers("spacy-distill.HFClassifierTeacher.v1")
def configure_hf_classifier_teacher(
    model: str,
    revision: Optional[str] = None,
    label_map: Optional[Dict[str, Optional[str]]] = None,
    multi_label: Optional[bool] = None,
    max_length: Optional[int] = None,
    device: str = "auto",
    dtype: str = "auto",
    batch_size: int = 32,
    allow_pickle: bool = False,
) -> HFClassifierTeacher:
    """A Hugging Face sequence classifier (`AutoModelForSequenceClassification`), as a teacher.

    model (str): a hub name or a local model directory.
    revision (Optional[str]): a hub revision (branch, tag or commit).
    label_map (Optional[Dict[str, Optional[str]]]): teacher label -> student label (None drops).
    multi_label (Optional[bool]): None reads it from the model config's problem_type.
    max_length (Optional[int]): tokens per text (longer texts are truncated and counted); None:
        the tokenizer's limit, at most 512.
    device (str): "cpu", "cuda", "cuda:N" or "auto".
    dtype (str): "auto" (float32), "float32", "float16" or "bfloat16".
    batch_size (int): texts per forward pass.
    allow_pickle (bool): load pickled weights (`pytorch_model.bin`, which can run code when
        loaded) when the model has no safetensors; only for a model you trust.
    RETURNS (HFClassifierTeacher): the teacher.
    """
    return HFClassifierTeacher(
        model,
        revision=revision,
        label_map=label_map,
        multi_label=multi_label,
        max_length=max_length,
        device=device,
        dtype=dtype,
        batch_size=batch_size,
        allow_pickle=allow_pickle,
    )
