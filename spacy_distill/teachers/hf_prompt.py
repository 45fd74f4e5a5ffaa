"""A causal language model (any `AutoModelForCausalLM`, GGUF files included) prompted zero- or
few-shot, as a teacher: each label's score is the likelihood the model gives its verbalizer(s)
as the answer to a prompt.

torch and transformers are imported when a teacher is built, never on import.

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

Scoring
-------
Prompts are sorted by token length, left-padded into batches of `batch_size` (explicit position
ids, so padding shifts nothing), and scored back in input order. When every verbalizer is one
token, one forward pass per batch reads them all from the next-token log-probabilities at the
last prompt position. Otherwise that pass also keeps the prompt's key/value cache; the cache is
repeated once per multi-token verbalizer and only the verbalizers' tokens run on top of it, so
the shared prompt is never recomputed per label.
"""
import string
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy

from ..errors import DistillError, LabelMismatchError
from ..registry import registry
from .base import log_softmax
from .hf_common import (
    fingerprint_of,
    load_model,
    load_tokenizer,
    offline_hint,
    require_transformers,
    split_gguf_path,
)

DEFAULT_INSTRUCTION = "Classify the text."
DEFAULT_TEMPLATE = "{instruction}\nOptions: {labels}\n{descriptions}\n{examples}Text: {text}\nAnswer:"
DEFAULT_EXAMPLE_TEMPLATE = "Text: {text}\nAnswer: {answer}\n\n"

DEFAULT_MULTI_LABEL_INSTRUCTION = "Decide whether the label applies to the text."
DEFAULT_MULTI_LABEL_TEMPLATE = (
    '{instruction}\n{descriptions}\n{examples}Text: {text}\n'
    'Does the label "{label}" apply to this text? Options: {labels}\nAnswer:'
)
DEFAULT_MULTI_LABEL_EXAMPLE_TEMPLATE = (
    'Text: {text}\nDoes the label "{label}" apply to this text? Options: {labels}\n'
    "Answer: {answer}\n\n"
)

TEMPLATE_FIELDS = ("instruction", "labels", "descriptions", "examples", "text")
EXAMPLE_FIELDS = ("text", "answer", "labels")
CONTENT_FREE_INPUTS = ("N/A",)
# Rows in one continuation forward pass (prompts x verbalizers): bounds the copies of the
# prefix cache held at once.
CONTINUATION_ROWS = 64
_PLACEHOLDER_TEXT = "N/A"


class HFPromptTeacher:
    """Scores texts with a causal LM prompted to name the label.

    Exclusive: a label's score is log p(verbalizer | prompt), log-sum-exp over its verbalizers
    (optionally per-token means), then log-softmax over labels. Multi-label: one yes/no question
    per label; its logit is log p(yes) - log p(no). Contextual calibration (Zhao et al., 2021)
    divides the label probabilities by those of content-free inputs and renormalises.
    """

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
        self._torch = torch
        self.model = model
        self.tokenizer = tokenizer
        self.labels: Tuple[str, ...] = tuple(labels)
        self.multi_label = multi_label
        self.exclusive = not multi_label
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
        self._check_labels()
        self.verbalizers = self._resolve_verbalizers(verbalizers)
        self.yes_verbalizers = _as_list(yes_verbalizers, "yes_verbalizers")
        self.no_verbalizers = _as_list(no_verbalizers, "no_verbalizers")
        self.label_descriptions = dict(label_descriptions or {})
        unknown = sorted(set(self.label_descriptions) - set(self.labels))
        if unknown:
            raise LabelMismatchError(
                f"label_descriptions names {unknown}, which are not among labels {list(self.labels)}"
            )
        if multi_label:
            self.instruction = DEFAULT_MULTI_LABEL_INSTRUCTION if instruction is None else instruction
            self.template = DEFAULT_MULTI_LABEL_TEMPLATE if template is None else template
            self.example_template = (
                DEFAULT_MULTI_LABEL_EXAMPLE_TEMPLATE if example_template is None else example_template
            )
        else:
            self.instruction = DEFAULT_INSTRUCTION if instruction is None else instruction
            self.template = DEFAULT_TEMPLATE if template is None else template
            self.example_template = DEFAULT_EXAMPLE_TEMPLATE if example_template is None else example_template
        extra = ("label",) if multi_label else ()
        _check_format("template", self.template, TEMPLATE_FIELDS + extra, ("text",) + extra)
        _check_format("example_template", self.example_template, EXAMPLE_FIELDS + extra, ("answer",))
        _check_format("instruction", self.instruction, ("labels",) + extra, ())
        self.examples = self._check_examples(examples)
        has_chat = bool(getattr(tokenizer, "chat_template", None))
        if use_chat_template is None:
            use_chat_template = has_chat
        elif use_chat_template and not has_chat:
            raise DistillError(
                f"{model_name}: use_chat_template = true, but its tokenizer has no chat template; "
                "set use_chat_template = false"
            )
        self.use_chat_template = bool(use_chat_template)
        self.system_prompt = system_prompt
        if system_prompt is not None and not self.use_chat_template:
            raise DistillError("system_prompt needs use_chat_template = true")
        pad_id = tokenizer.pad_token_id
        if pad_id is None:
            pad_id = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else 0
        self._pad_id = int(pad_id)
        self._device = next(model.parameters()).device
        self._keep_kwarg = _logits_to_keep_kwarg(model)

        anchor = self.render_prompt(_PLACEHOLDER_TEXT, label=self.labels[0] if multi_label else None)
        if verbalizer_prefix is None:
            verbalizer_prefix = "" if anchor[-1:].isspace() else " "
        self.verbalizer_prefix = verbalizer_prefix
        # The classes a prompt chooses between: the labels, or yes/no per label.
        if multi_label:
            groups = [("yes", self.yes_verbalizers), ("no", self.no_verbalizers)]
        else:
            groups = [(label, self.verbalizers[label]) for label in self.labels]
        self._class_ids: List[List[List[int]]] = [
            [self._continuation_ids(anchor, verbalizer, name) for verbalizer in verbalizers_]
            for name, verbalizers_ in groups
        ]
        self._flat = [(c, ids) for c, class_ids in enumerate(self._class_ids) for ids in class_ids]
        self.single_token = all(len(ids) == 1 for _, ids in self._flat)
        self._max_continuation = max(len(ids) for _, ids in self._flat)
        self._fixed_cost = len(self._encode(self.render_prompt("", label=self.labels[0] if multi_label else None)))
        if self._fixed_cost + self._max_continuation > max_length:
            raise DistillError(
                f"the prompt without its text already has {self._fixed_cost} tokens (plus "
                f"{self._max_continuation} for the answer), over max_length = {max_length}: "
                "shorten the instruction or examples, or raise max_length"
            )
        self.method = "verbalizer-logprobs" + ("+calibrated" if calibrate else "")
        """How scores are made, recorded in each target's teacher info."""
        self.n_scored = 0
        self.n_truncated = 0
        self._calibration: Optional[numpy.ndarray] = None
        self._fingerprint: Optional[str] = None

    # --- configuration checks -------------------------------------------------------------

    def _check_labels(self) -> None:
        if len(set(self.labels)) != len(self.labels):
            raise LabelMismatchError(f"labels {list(self.labels)} has duplicates")
        if len(self.labels) < (1 if self.multi_label else 2):
            raise LabelMismatchError(
                f"labels {list(self.labels)}: an exclusive teacher needs two labels or more"
            )

    def _resolve_verbalizers(self, verbalizers) -> Dict[str, List[str]]:
        verbalizers = dict(verbalizers or {})
        unknown = sorted(set(verbalizers) - set(self.labels))
        if unknown:
            raise LabelMismatchError(
                f"verbalizers names {unknown}, which are not among labels {list(self.labels)}"
            )
        return {
            label: _as_list(verbalizers.get(label, [label]), f"verbalizers[{label!r}]")
            for label in self.labels
        }

    def _check_examples(self, examples) -> List[Dict[str, Any]]:
        checked = []
        for i, example in enumerate(examples or []):
            key = "labels" if isinstance(example, dict) and "labels" in example else "label"
            if not isinstance(example, dict) or "text" not in example or key not in example:
                raise DistillError(f"examples[{i}]: expected {{\"text\": ..., \"label\": ...}}, got {example!r}")
            gold = example[key]
            gold_labels = [gold] if isinstance(gold, str) else list(gold)
            if not self.multi_label and len(gold_labels) != 1:
                raise DistillError(f"examples[{i}]: an exclusive teacher's example has one label, got {gold!r}")
            unknown = [label for label in gold_labels if label not in self.labels]
            if unknown:
                raise LabelMismatchError(
                    f"examples[{i}] ({example['text'][:40]!r}): label(s) {unknown} not among "
                    f"labels {list(self.labels)}"
                )
            checked.append({"text": str(example["text"]), "label": gold_labels})
        return checked

    # --- prompts --------------------------------------------------------------------------

    def _answer(self, label: str) -> str:
        return self.verbalizers[label][0]

    def render_prompt(self, text: str, label: Optional[str] = None) -> str:
        """The full prompt for a text (with the chat template applied when it is used).

        text (str): the text.
        label (Optional[str]): the label asked about (multi-label only).
        RETURNS (str): the prompt; the answer follows it.
        """
        if self.multi_label:
            if label is None:
                raise DistillError("a multi-label prompt asks about one label: pass label=")
            answers = [self.yes_verbalizers[0], self.no_verbalizers[0]]
            extra = {"label": self._answer(label)}
        else:
            answers = [self._answer(name) for name in self.labels]
            extra = {}
        labels_str = ", ".join(answers)
        shots = []
        for example in self.examples:
            if self.multi_label:
                answer = answers[0] if label in example["label"] else answers[1]
            else:
                answer = self._answer(example["label"][0])
            shots.append(
                self.example_template.format(text=example["text"], answer=answer, labels=labels_str, **extra)
            )
        descriptions = "".join(
            f"- {self._answer(name)}: {self.label_descriptions[name]}\n"
            for name in self.labels
            if name in self.label_descriptions
        )
        prompt = self.template.format(
            instruction=self.instruction.format(labels=labels_str, **extra),
            labels=labels_str,
            descriptions=descriptions,
            examples="".join(shots),
            text=text,
            **extra,
        )
        if not self.use_chat_template:
            return prompt
        messages = [{"role": "user", "content": prompt}]
        if self.system_prompt is not None:
            messages.insert(0, {"role": "system", "content": self.system_prompt})
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def _encode(self, prompt: str) -> List[int]:
        # A rendered chat template holds its special tokens already (as apply_chat_template's
        # own tokenization does); a plain prompt gets the tokenizer's (e.g. a BOS token).
        return list(self.tokenizer(prompt, add_special_tokens=not self.use_chat_template)["input_ids"])

    def _continuation_ids(self, anchor: str, verbalizer: str, name: str) -> List[int]:
        before = self._encode(anchor)
        after = self._encode(anchor + self.verbalizer_prefix + verbalizer)
        if after[: len(before)] != before:
            # The answer's first characters merged with the prompt's last token: the prompt's
            # tokens would differ with and without the answer, so no cache could be shared.
            raise DistillError(
                f"verbalizer {verbalizer!r} ({name}) merges with the end of the prompt when "
                f"tokenized (prompt ends {anchor[-20:]!r}, verbalizer_prefix "
                f"{self.verbalizer_prefix!r}): end the template with a non-space character "
                "such as 'Answer:' or set verbalizer_prefix"
            )
        ids = after[len(before):]
        if not ids:
            raise DistillError(
                f"verbalizer {verbalizer!r} ({name}) tokenizes to nothing after the prompt: "
                "give a non-empty answer string"
            )
        return ids

    def _prompt_ids(self, text: str, label: Optional[str] = None) -> List[int]:
        ids = self._encode(self.render_prompt(text, label))
        budget = self.max_length - self._max_continuation
        if len(ids) <= budget:
            return ids
        if label is None or label == self.labels[0]:
            self.n_truncated += 1
        # Cut the text (never the instruction or examples) until the prompt fits.
        text_ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        keep = max(0, len(text_ids) - (len(ids) - budget))
        while True:
            cut = self.tokenizer.decode(text_ids[:keep], skip_special_tokens=True)
            ids = self._encode(self.render_prompt(cut, label))
            if len(ids) <= budget or keep == 0:
                return ids
            keep = max(0, keep - max(1, len(ids) - budget))

    # --- scoring --------------------------------------------------------------------------

    @property
    def fingerprint(self) -> str:
        """sha256 of the model's name, file, revision and local files, and everything that makes
        the prompt and reads the answer."""
        if self._fingerprint is None:
            self._fingerprint = fingerprint_of(
                [
                    "spacy-distill.HFPromptTeacher.v1",
                    self.model_name,
                    self.gguf_file,
                    self.revision,
                    self.dtype,
                    self.labels,
                    self.template,
                    self.example_template,
                    self.instruction,
                    self.verbalizers,
                    self.verbalizer_prefix,
                    self.examples,
                    self.label_descriptions,
                    self.use_chat_template,
                    getattr(self.tokenizer, "chat_template", None) if self.use_chat_template else None,
                    self.system_prompt,
                    self.calibrate,
                    self.content_free_inputs if self.calibrate else None,
                    self.length_normalize,
                    self.multi_label,
                    self.yes_verbalizers if self.multi_label else None,
                    self.no_verbalizers if self.multi_label else None,
                    self.max_length,
                ],
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
            scores = scores - self._content_free_scores()[None, :]
            if self.exclusive:
                scores = log_softmax(scores)
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

    def hidden_settings(
        self, *, layer: Optional[int] = None, last_k: Optional[int] = None, pooling: Optional[str] = None
    ) -> Dict[str, Any]:
        """The hidden-state settings `hidden_states` uses (defaults: the last layer, and the last
        token, which a causal LM has read the whole text at).

        RETURNS (Dict[str, Any]): layer, last_k, pooling, width and model.
        """
        from ..hidden.extract import resolve_hidden_spec

        config = self.model.config
        n_states = int(getattr(config, "num_hidden_layers", 0) or 0) + 1
        spec = resolve_hidden_spec(layer, last_k, pooling, default_pooling="last", n_states=n_states)
        width = int(getattr(config, "hidden_size", 0) or getattr(config, "d_model", 0))
        model = f"{self.model_name}/{self.gguf_file}" if self.gguf_file else self.model_name
        return {**spec, "width": width, "model": model}

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
        """The causal LM's hidden states of the bare texts (no prompt: the states describe the
        text), pooled per text and/or aligned to the tokens of `docs`.

        texts (Sequence[str]): the texts.
        docs (Optional[Sequence[Doc]]): their spaCy docs (needed for token-level states).
        level (str): "doc", "token" or "both".
        RETURNS (List[HiddenStates]): one per text.
        """
        from ..hidden.extract import hf_hidden_states

        spec = self.hidden_settings(layer=layer, last_k=last_k, pooling=pooling)
        # The base model gives the hidden states without the vocabulary projection.
        module = getattr(self.model, "base_model", None) or self.model
        return hf_hidden_states(
            module, self.tokenizer, texts, docs, level=level, layer=spec["layer"],
            last_k=spec["last_k"], pooling=spec["pooling"],
            max_length=min(self.max_length, getattr(self.model.config, "max_position_embeddings", None) or self.max_length),
            batch_size=self.batch_size, pad_token_id=self._pad_id, model_name=self.model_name,
        )

    def _raw_scores(self, texts: Sequence[str]) -> numpy.ndarray:
        """Uncalibrated scores, float64: label log-probabilities or yes/no logits."""
        if self.exclusive:
            loglik = self._class_loglik([self._prompt_ids(text) for text in texts])
            return log_softmax(loglik)
        prompts = [self._prompt_ids(text, label) for text in texts for label in self.labels]
        loglik = self._class_loglik(prompts).reshape(len(texts), len(self.labels), 2)
        return loglik[..., 0] - loglik[..., 1]

    def _content_free_scores(self) -> numpy.ndarray:
        """The content-free inputs' average class probabilities, as log-probabilities (exclusive)
        or as the logit of the average yes-probability (multi-label)."""
        if self._calibration is None:
            raw = self._raw_scores(list(self.content_free_inputs))
            if self.exclusive:
                self._calibration = numpy.log(numpy.exp(raw).mean(axis=0))
            else:
                p_yes = (1.0 / (1.0 + numpy.exp(-raw))).mean(axis=0)
                self._calibration = numpy.log(p_yes) - numpy.log1p(-p_yes)
        return self._calibration

    def _class_loglik(self, prompts: List[List[int]]) -> numpy.ndarray:
        """log p(class | prompt) for every prompt, unnormalised over classes: (n, n_classes)."""
        order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
        result = numpy.zeros((len(prompts), len(self._class_ids)), dtype="float64")
        for start in range(0, len(order), self.batch_size):
            index = order[start : start + self.batch_size]
            result[index] = self._score_batch([prompts[i] for i in index])
        return result

    def _score_batch(self, prompts: List[List[int]]):
        torch = self._torch
        n_prompts = len(prompts)
        width = max(len(ids) for ids in prompts)
        input_ids = torch.full((n_prompts, width), self._pad_id, dtype=torch.long)
        mask = torch.zeros((n_prompts, width), dtype=torch.long)
        for row, ids in enumerate(prompts):  # left padding: every prompt ends at the last column
            input_ids[row, width - len(ids) :] = torch.tensor(ids, dtype=torch.long)
            mask[row, width - len(ids) :] = 1
        lengths = mask.sum(dim=1)
        positions = (mask.cumsum(dim=1) - 1).clamp(min=0)
        input_ids, mask, positions = (t.to(self._device) for t in (input_ids, mask, positions))
        with torch.inference_mode():
            out = self.model(
                input_ids=input_ids,
                attention_mask=mask,
                position_ids=positions,
                use_cache=not self.single_token,
                **self._keep_kwarg,
            )
            first = torch.log_softmax(out.logits[:, -1].float(), dim=-1)
            first_ids = torch.tensor([ids[0] for _, ids in self._flat], device=self._device)
            # (prompts, verbalizers), summed in float64 on the CPU (MPS has no float64)
            verb_scores = first[:, first_ids].cpu().double()
            longer = [j for j, (_, ids) in enumerate(self._flat) if len(ids) > 1]
            per_chunk = max(1, CONTINUATION_ROWS // n_prompts)
            for start in range(0, len(longer), per_chunk):
                chunk = longer[start : start + per_chunk]
                rest = self._score_continuations(out.past_key_values, mask, lengths, chunk)
                verb_scores[:, chunk] += rest.cpu().double()
        if self.length_normalize:
            n_tokens = torch.tensor([len(ids) for _, ids in self._flat], dtype=torch.float64)
            verb_scores = verb_scores / n_tokens
        verb_scores = verb_scores.numpy()
        owners = numpy.asarray([c for c, _ in self._flat])
        return numpy.stack(
            [_logsumexp_rows(verb_scores[:, owners == c]) for c in range(len(self._class_ids))], axis=1
        )

    def _score_continuations(self, cache, mask, lengths, chunk: List[int]):
        """Log-probability of tokens 2.. of the verbalizers in `chunk`, reading the prompt from
        its cache (repeated once per verbalizer) instead of running it again."""
        torch = self._torch
        n_prompts, k = mask.shape[0], len(chunk)
        tails = [self._flat[j][1] for j in chunk]
        steps = max(len(ids) for ids in tails) - 1
        inputs = torch.full((k, steps), self._pad_id, dtype=torch.long)
        targets = torch.zeros((k, steps), dtype=torch.long)
        valid = torch.zeros((k, steps), dtype=torch.long)
        for q, ids in enumerate(tails):
            inputs[q, : len(ids) - 1] = torch.tensor(ids[:-1])
            targets[q, : len(ids) - 1] = torch.tensor(ids[1:])
            valid[q, : len(ids) - 1] = 1
        # Row b * k + q: prompt b, verbalizer q.
        inputs, targets, valid = (t.repeat(n_prompts, 1).to(self._device) for t in (inputs, targets, valid))
        attention = torch.cat([mask.repeat_interleave(k, dim=0), valid], dim=1)
        positions = lengths.to(self._device).repeat_interleave(k)[:, None] + torch.arange(steps, device=self._device)
        out = self.model(
            input_ids=inputs,
            attention_mask=attention,
            position_ids=positions,
            past_key_values=_repeat_cache(cache, k),
            use_cache=True,
        )
        logp = torch.log_softmax(out.logits.float(), dim=-1)
        token_logp = logp.gather(-1, targets[..., None])[..., 0] * valid
        return token_logp.sum(dim=1).reshape(n_prompts, k)


def _repeat_cache(cache, k: int):
    """A new cache with each prompt's keys and values repeated k times (the old one is kept:
    a forward pass appends to the cache it is given)."""
    if hasattr(cache, "to_legacy_cache"):
        legacy = cache.to_legacy_cache()
        repeated = tuple(tuple(t.repeat_interleave(k, dim=0) for t in layer) for layer in legacy)
        return type(cache).from_legacy_cache(repeated)
    return tuple(tuple(t.repeat_interleave(k, dim=0) for t in layer) for layer in cache)


def _logits_to_keep_kwarg(model) -> Dict[str, int]:
    """Ask the LM head for the last position only (it is a large matmul over the vocabulary)."""
    import inspect

    params = inspect.signature(model.forward).parameters
    for name in ("logits_to_keep", "num_logits_to_keep"):
        if name in params:
            return {name: 1}
    return {}


def _logsumexp_rows(x: numpy.ndarray) -> numpy.ndarray:
    top = x.max(axis=1)
    return top + numpy.log(numpy.exp(x - top[:, None]).sum(axis=1))


def _as_list(value: Union[str, Sequence[str]], field: str) -> List[str]:
    values = [value] if isinstance(value, str) else list(value)
    if not values or not all(isinstance(v, str) and v.strip() for v in values):
        raise DistillError(f"{field}: expected one or more non-empty strings, got {value!r}")
    return values


def _check_format(field: str, template: str, allowed: Sequence[str], required: Sequence[str]) -> None:
    try:
        names = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError as err:
        raise DistillError(f"{field}: not a valid format string ({err}); write literal braces as {{{{ }}}}") from err
    unknown = sorted(names - set(allowed))
    if unknown:
        raise DistillError(f"{field}: unknown field(s) {unknown}; it may use {list(allowed)}")
    missing = [name for name in required if name not in names]
    if missing:
        raise DistillError(f"{field}: must contain {['{' + m + '}' for m in missing]}")


@registry.teachers("spacy-distill.HFPromptTeacher.v1")
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

    name, gguf_file = split_gguf_path(model, gguf_file)
    try:
        tokenizer = load_tokenizer(name, gguf_file=gguf_file, revision=revision)
        lm = load_model(
            "AutoModelForCausalLM", name, gguf_file=gguf_file, revision=revision, dtype=dtype, device=device,
            # False leaves it to the environment (SPACY_DISTILL_ALLOW_PICKLE).
            allow_pickle=True if allow_pickle else None,
        )
    except DistillError as err:
        raise DistillError(f"{err}{offline_hint()}") from err
    local = Path(name) / gguf_file if gguf_file else Path(name)
    return HFPromptTeacher(
        lm,
        tokenizer,
        labels,
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
        model_name=name,
        gguf_file=gguf_file,
        revision=revision,
        model_files=str(local) if local.exists() else None,
        dtype=dtype,
    )
