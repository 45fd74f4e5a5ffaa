"""A causal language model (any `AutoModelForCausalLM`, GGUF files included) prompted zero- or
few-shot, as a teacher: each label's score is the likelihood the model gives its verbalizer(s)
as the answer to a prompt.

The parts: a `LabelPrompt` (prompting.py: labels, verbalizers, examples, instruction and the
rules they follow), templates that render it, and a `ContinuationScorer` (prompt_lm.py: batched
likelihoods that share each prompt's key/value cache between answers). torch and transformers
are imported when a teacher is built, never on import.

Verbalizer tokenization (the leading-space convention)
------------------------------------------------------
A verbalizer is scored as the continuation `verbalizer_prefix + verbalizer` of the prompt.
`verbalizer_prefix=None` (the default) picks " " when the prompt ends in a non-space character
(a plain prompt ending in "Answer:": the model would write "Answer: positive") and "" when it
ends in whitespace (a chat prompt ending in "<|im_start|>assistant\\n": the answer starts the
assistant message). The continuation's tokens are taken as a difference, ids(prompt + prefix +
verbalizer) minus ids(prompt), on the prompt rendered for a placeholder text, so they are the
tokens the model sees in context (no stray "▁" or merged space of a verbalizer tokenized on its
own). The prompt is then tokenized once per text and the continuation ids appended.
"""

from typing import Any, Dict, List, Optional, Sequence, Union

import numpy

from ..errors import DistillError
from ..hf.features import HFHiddenStates
from ..hf.loading import (
    fingerprint_of,
    load_causal_lm,
    require_transformers,
)
from ..probabilities import log_softmax
from ..registry import registry
from ..teacher_protocol import TeacherBase
from .prompt_lm import ContinuationScorer, PromptEncoder, pad_token_id
from .prompting import TemplatePrompt, calibrate, calibration_offsets

CONTENT_FREE_INPUTS = ("N/A",)
_PLACEHOLDER_TEXT = "N/A"


class HFPromptTeacher(HFHiddenStates, TeacherBase):
    """Scores texts with a causal LM prompted to name the label.

    Exclusive: a label's score is log p(verbalizer | prompt), log-sum-exp over its verbalizers
    (optionally per-token means), then log-softmax over labels. Multi-label: one yes/no question
    per label; its logit is log p(yes) - log p(no). Contextual calibration (Zhao et al., 2021)
    divides the label probabilities by those of content-free inputs and renormalises.
    """

    supports_hidden = True

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        labels: Sequence[str],
        *,
        verbalizers: Optional[Dict[str, Union[str, Sequence[str]]]] = None,
        instruction: Optional[str] = None,
        label_descriptions: Optional[Dict[str, str]] = None,
        examples: Optional[Sequence[Dict[str, Any]]] = None,
        template: Optional[str] = None,
        example_template: Optional[str] = None,
        use_chat_template: Optional[bool] = None,
        system_prompt: Optional[str] = None,
        verbalizer_prefix: Optional[str] = None,
        length_normalize: bool = False,
        calibrate: bool = False,
        content_free_inputs: Sequence[str] = CONTENT_FREE_INPUTS,
        multi_label: bool = False,
        yes_verbalizers: Sequence[str] = ("Yes",),
        no_verbalizers: Sequence[str] = ("No",),
        max_length: int = 1024,
        batch_size: int = 8,
        model_name: str = "model",
        gguf_file: Optional[str] = None,
        revision: Optional[str] = None,
        model_files: Optional[str] = None,
        dtype: str = "auto",
    ) -> None:
        """
        model: a loaded causal LM (`AutoModelForCausalLM`), in eval mode on its device.
        tokenizer: its (fast) tokenizer.
        labels (Sequence[str]): the student's label names, in column order.
        verbalizers (Optional[Dict[str, Union[str, Sequence[str]]]]): label -> answer string(s)
            (multi-token allowed); a label without an entry is answered by its name. The first
            verbalizer is the label's name in the prompt.
        instruction (Optional[str]): the task, `{instruction}` in the template; it may use
            {labels} (multi-label also {label}) itself (write literal braces as {{ }}).
        label_descriptions (Optional[Dict[str, str]]): label -> description, listed as
            "- answer: description" lines in `{descriptions}`.
        examples (Optional[Sequence[Dict[str, Any]]]): few-shot examples {"text", "label"}
            (multi-label: {"text", "labels"}, or "label" as a list), rendered with
            `example_template` in `{examples}`.
        template (Optional[str]): a format string with {instruction}, {labels} (the answers,
            comma-separated: each label's first verbalizer, or yes/no), {descriptions},
            {examples}, {text}; multi-label also {label} (the label's first verbalizer).
        example_template (Optional[str]): a format string with {text}, {answer}, {labels}
            (multi-label also {label}) for one few-shot example.
        use_chat_template (Optional[bool]): the prompt becomes the user message of the
            tokenizer's chat template, the answer the start of the assistant message; None: when
            the tokenizer has a chat template.
        system_prompt (Optional[str]): a system message (chat template only).
        verbalizer_prefix (Optional[str]): put before each verbalizer; None: " " unless the
            prompt ends in whitespace (see the module docstring).
        length_normalize (bool): mean log-probability per token instead of the sum.
        calibrate (bool): contextual calibration with `content_free_inputs`.
        content_free_inputs (Sequence[str]): the content-free texts (their probabilities are
            averaged).
        multi_label (bool): one yes/no question per label; scores are logits.
        yes_verbalizers (Sequence[str]): answers meaning yes (multi-label).
        no_verbalizers (Sequence[str]): answers meaning no (multi-label).
        max_length (int): the most tokens a prompt plus an answer may have; longer texts are
            cut (the text, never the instruction or examples).
        batch_size (int): prompts per forward pass.
        model_name, gguf_file, revision, model_files, dtype: where the model came from, for the
            teacher id and the fingerprint (`model_files`: a local file or folder to stat).
        """
        torch, _ = require_transformers()
        if not isinstance(batch_size, int) or batch_size < 1:
            raise DistillError(f"batch_size must be a positive integer, got {batch_size!r}")
        self.prompt = TemplatePrompt(
            labels,
            instruction,
            template=template,
            example_template=example_template,
            verbalizers=verbalizers,
            examples=examples,
            multi_label=multi_label,
            yes_verbalizers=yes_verbalizers,
            no_verbalizers=no_verbalizers,
            label_descriptions=label_descriptions,
        )
        self.template, self.example_template = self.prompt.template, self.prompt.example_template
        self.model = model
        self.tokenizer = tokenizer
        self.labels = self.prompt.labels
        self.multi_label = self.prompt.multi_label
        self.exclusive = not multi_label
        self.verbalizers = self.prompt.verbalizers
        self.yes_verbalizers = self.prompt.yes_verbalizers
        self.no_verbalizers = self.prompt.no_verbalizers
        self.label_descriptions = self.prompt.label_descriptions
        self.instruction = self.prompt.instruction
        self.examples = self.prompt.examples
        self.batch_size = batch_size
        self.length_normalize = length_normalize
        self.calibrate = calibrate
        self.content_free_inputs = tuple(content_free_inputs)
        self.max_length = max_length
        self.model_name = model_name
        self.gguf_file = gguf_file
        self.revision = revision
        self.model_files = model_files
        self.dtype = dtype
        self.teacher_id = f"hf-prompt:{model_name}" + (f"/{gguf_file}" if gguf_file else "")
        self.encoder = PromptEncoder(
            tokenizer,
            use_chat_template=use_chat_template,
            system_prompt=system_prompt,
            model_name=model_name,
        )
        self.use_chat_template = self.encoder.use_chat_template
        self.system_prompt = system_prompt
        self._pad_id = pad_token_id(tokenizer)

        first_question = self.prompt.questions[0]
        anchor = self.render_prompt(_PLACEHOLDER_TEXT, label=first_question)
        if verbalizer_prefix is None:
            verbalizer_prefix = "" if anchor[-1:].isspace() else " "
        self.verbalizer_prefix = verbalizer_prefix
        names = self.prompt.labels if self.exclusive else ("yes", "no")
        class_ids = [
            [
                self.encoder.continuation_ids(anchor, verbalizer_prefix + verbalizer, name)
                for verbalizer in forms
            ]
            for name, forms in zip(names, self.prompt.classes())
        ]
        self.scorer = ContinuationScorer(
            torch,
            model,
            class_ids,
            pad_id=self._pad_id,
            batch_size=batch_size,
            length_normalize=length_normalize,
        )
        self.single_token = self.scorer.single_token
        self._fixed_cost = len(self.encoder.encode(self.render_prompt("", label=first_question)))
        if self._fixed_cost + self.scorer.max_continuation > max_length:
            raise DistillError(
                f"the prompt without its text already has {self._fixed_cost} tokens (plus "
                f"{self.scorer.max_continuation} for the answer), over max_length = {max_length}: "
                "shorten the instruction or examples, or raise max_length"
            )
        self.method = "verbalizer-logprobs" + ("+calibrated" if calibrate else "")
        """How scores are made, recorded in each target's teacher info."""
        self.n_scored = 0
        self.n_truncated = 0
        self._calibration: Optional[numpy.ndarray] = None
        self._fingerprint: Optional[str] = None

    # Hidden states: those of the causal LM on the bare texts (no prompt: the states describe
    # the text), from its base model (without the vocabulary projection), at the last token by
    # default (a causal LM has read the whole text there).
    def _hidden_module(self) -> Any:
        return getattr(self.model, "base_model", None) or self.model

    def _hidden_defaults(self) -> Dict[str, Any]:
        return {"default_pooling": "last"}

    def _hidden_model_id(self) -> str:
        return f"{self.model_name}/{self.gguf_file}" if self.gguf_file else self.model_name

    def _hidden_max_length(self) -> int:
        positions = getattr(self.model.config, "max_position_embeddings", None)
        return min(self.max_length, positions or self.max_length)

    def _hidden_pad_token_id(self) -> int:
        return self._pad_id

    def render_prompt(self, text: str, label: Optional[str] = None) -> str:
        """The full prompt for a text (with the chat template applied when it is used).

        text (str): the text.
        label (Optional[str]): the label asked about (multi-label only).
        RETURNS (str): the prompt; the answer follows it.
        """
        return self.encoder.wrap(self.prompt.render(text, label))

    @property
    def fingerprint(self) -> str:
        """sha256 of the model's name, file, revision and local files, and everything that makes
        the prompt and reads the answer."""
        if self._fingerprint is None:
            chat_template = (
                getattr(self.tokenizer, "chat_template", None) if self.use_chat_template else None
            )
            examples = [{"text": ex.text, "label": list(ex.labels)} for ex in self.examples]
            parts = ["spacy-distill.HFPromptTeacher.v1", self.model_name, self.gguf_file]
            parts += [self.revision, self.dtype, self.labels, self.template, self.example_template]
            parts += [self.instruction, self.verbalizers, self.verbalizer_prefix, examples]
            parts += [self.label_descriptions, self.use_chat_template, chat_template]
            parts += [self.system_prompt, self.calibrate]
            parts += [self.content_free_inputs if self.calibrate else None, self.length_normalize]
            parts += [self.multi_label, self.yes_verbalizers if self.multi_label else None]
            parts += [self.no_verbalizers if self.multi_label else None, self.max_length]
            self._fingerprint = fingerprint_of(
                parts,
                model_files=self.model_files,
            )
        return self._fingerprint

    def score(self, texts: Sequence[str]) -> numpy.ndarray:
        """Teacher scores: log-probabilities over labels (exclusive) or logits (multi-label).

        texts (Sequence[str]): the texts.
        RETURNS (numpy.ndarray): shape (len(texts), len(self.labels)), float32.
        """
        if not len(texts):
            return numpy.zeros((0, len(self.labels)), dtype="float32")
        scores = self._raw_scores(texts)
        self.n_scored += len(texts)
        if self.calibrate:
            if self._calibration is None:
                self._calibration = calibration_offsets(
                    self._raw_scores(list(self.content_free_inputs)), self.exclusive
                )
            scores = calibrate(scores, self._calibration, self.exclusive)
        return scores.astype("float32")

    def stats(self) -> Dict[str, Any]:
        """Counters since the teacher was built.

        RETURNS (Dict[str, Any]): n_scored, n_truncated (texts cut to fit max_length),
            truncated_share, max_length, single_token (one forward pass per prompt).
        """
        return {
            "n_scored": self.n_scored,
            "n_truncated": self.n_truncated,
            "truncated_share": self.n_truncated / self.n_scored if self.n_scored else 0.0,
            "max_length": self.max_length,
            "single_token": self.single_token,
        }

    def _raw_scores(self, texts: Sequence[str]) -> numpy.ndarray:
        """Uncalibrated scores, float64: label log-probabilities or yes/no logits."""
        if self.exclusive:
            return log_softmax(self.scorer.class_loglik([self._prompt_ids(text) for text in texts]))
        prompts = [self._prompt_ids(text, label) for text in texts for label in self.labels]
        loglik = self.scorer.class_loglik(prompts).reshape(len(texts), len(self.labels), 2)
        return loglik[..., 0] - loglik[..., 1]

    def _prompt_ids(self, text: str, label: Optional[str] = None) -> List[int]:
        budget = self.max_length - self.scorer.max_continuation
        ids, cut = self.encoder.fit(lambda part: self.render_prompt(part, label), text, budget)
        if cut and (label is None or label == self.labels[0]):  # a text counts once
            self.n_truncated += 1
        return ids


@registry.spacy_distill_teachers("spacy-distill.HFPromptTeacher.v1")
def configure_hf_prompt_teacher(
    model: str,
    labels: List[str],
    verbalizers: Optional[Dict[str, Union[str, List[str]]]] = None,
    instruction: Optional[str] = None,
    label_descriptions: Optional[Dict[str, str]] = None,
    examples: Optional[List[Dict[str, Any]]] = None,
    template: Optional[str] = None,
    example_template: Optional[str] = None,
    use_chat_template: Optional[bool] = None,
    system_prompt: Optional[str] = None,
    verbalizer_prefix: Optional[str] = None,
    length_normalize: bool = False,
    calibrate: bool = False,
    content_free_inputs: List[str] = list(CONTENT_FREE_INPUTS),
    multi_label: bool = False,
    yes_verbalizers: List[str] = ["Yes"],
    no_verbalizers: List[str] = ["No"],
    gguf_file: Optional[str] = None,
    revision: Optional[str] = None,
    max_length: int = 1024,
    device: str = "auto",
    dtype: str = "auto",
    batch_size: int = 8,
    allow_pickle: bool = False,
) -> HFPromptTeacher:
    """A causal LM prompted zero- or few-shot, as a teacher (see HFPromptTeacher for the
    prompt and answer settings).

    model (str): a hub name, a local folder, or a path to a .gguf file.
    labels (List[str]): the student's labels, in order.
    gguf_file (Optional[str]): a GGUF file inside `model` (a folder or hub repo).
    revision (Optional[str]): a hub revision.
    max_length (int): the most tokens per prompt plus answer; texts are cut to fit.
    device (str): "cpu", "cuda", "cuda:N" or "auto".
    dtype (str): "auto" (float32 on CPU), "float32", "float16" or "bfloat16".
    batch_size (int): prompts per forward pass.
    allow_pickle (bool): load pickled weights (`pytorch_model.bin`, which can run code when
        loaded) when the model has no safetensors; only for a model you trust.
    RETURNS (HFPromptTeacher): the teacher.
    """
    from pathlib import Path

    lm, tokenizer, name, gguf_file = load_causal_lm(
        model,
        gguf_file=gguf_file,
        revision=revision,
        dtype=dtype,
        device=device,
        # False leaves it to the environment (SPACY_DISTILL_ALLOW_PICKLE).
        allow_pickle=True if allow_pickle else None,
    )
    local = Path(name) / gguf_file if gguf_file else Path(name)
    settings = dict(
        verbalizers=verbalizers,
        instruction=instruction,
        label_descriptions=label_descriptions,
        examples=examples,
        template=template,
        example_template=example_template,
        use_chat_template=use_chat_template,
        system_prompt=system_prompt,
        verbalizer_prefix=verbalizer_prefix,
        length_normalize=length_normalize,
        calibrate=calibrate,
        content_free_inputs=content_free_inputs,
        multi_label=multi_label,
        yes_verbalizers=yes_verbalizers,
        no_verbalizers=no_verbalizers,
        max_length=max_length,
        batch_size=batch_size,
    )
    return HFPromptTeacher(
        lm,
        tokenizer,
        labels,
        model_name=name,
        gguf_file=gguf_file,
        revision=revision,
        model_files=str(local) if local.exists() else None,
        dtype=dtype,
        **settings,
    )
