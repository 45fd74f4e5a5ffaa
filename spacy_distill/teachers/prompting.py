"""What a prompted teacher asks, checked once with one set of rules: the labels, the words the
model may answer for each (verbalizers), few-shot examples, the instruction and templates, and
contextual calibration. The HF prompt teacher (`hf_prompt.py`) and the server teacher
(`openai_server.py`) both build a `LabelPrompt`; only how they ask (a template and a causal
LM's likelihoods, or chat messages and a server's first-token log-probabilities) differs.

The rules, where the two teachers once had their own:
- labels: distinct; an exclusive teacher needs two or more.
- verbalizers: label -> a string or a list of non-empty strings, surrounding whitespace
  stripped (a leading space is the prompt's business: HF's `verbalizer_prefix`); a label
  without an entry is answered by its name; the first verbalizer names the label in the prompt.
  An exclusive teacher's labels may not share a verbalizer (case aside): their scores would be
  the same. `check_first_words` adds the rule of a teacher that reads the first answer token only.
- examples: {"text": str, "label": str} (exclusive); multi-label: {"text", "labels": [...]}
  ("label" as a list is accepted too); every label named must be among the labels.
- instruction and templates: format strings; unknown fields, and missing required ones, are
  refused with the fields allowed (write literal braces as {{ }}).
"""

import string
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple, Union

import numpy

from ..errors import DistillError, LabelMismatchError
from ..probabilities import log_softmax

Verbalizers = Dict[str, Union[str, Sequence[str]]]
TEMPLATE_FIELDS = ("instruction", "labels", "descriptions", "examples", "text")
EXAMPLE_FIELDS = ("text", "answer", "labels")
# TemplatePrompt's defaults, by multi_label.
DEFAULT_TEMPLATES = {
    False: {
        "instruction": "Classify the text.",
        "template": (
            "{instruction}\nOptions: {labels}\n{descriptions}\n{examples}Text: {text}\nAnswer:"
        ),
        "example_template": "Text: {text}\nAnswer: {answer}\n\n",
    },
    True: {
        "instruction": "Decide whether the label applies to the text.",
        "template": (
            "{instruction}\n{descriptions}\n{examples}Text: {text}\n"
            'Does the label "{label}" apply to this text? Options: {labels}\nAnswer:'
        ),
        "example_template": (
            'Text: {text}\nDoes the label "{label}" apply to this text? Options: {labels}\n'
            "Answer: {answer}\n\n"
        ),
    },
}


class Example(NamedTuple):
    """A checked few-shot example: its text and the labels it has (one when exclusive)."""

    text: str
    labels: Tuple[str, ...]


def check_labels(labels: Sequence[str], multi_label: bool) -> Tuple[str, ...]:
    """The labels as a tuple: distinct, and two or more for an exclusive teacher.

    RAISES (LabelMismatchError): a label repeats, or an exclusive teacher has fewer than two.
    """
    labels = tuple(labels)
    if len(set(labels)) != len(labels):
        repeated = sorted({label for label in labels if labels.count(label) > 1})
        raise LabelMismatchError(f"labels {list(labels)} repeat {repeated}")
    if len(labels) < (1 if multi_label else 2):
        raise LabelMismatchError(
            f"labels {list(labels)}: an exclusive teacher needs two labels or more"
        )
    return labels


def check_label_keys(
    mapping: Optional[Dict[str, Any]], labels: Sequence[str], field: str
) -> Dict[str, Any]:
    """A label -> value mapping whose keys are all labels (`verbalizers`, `label_descriptions`)."""
    mapping = dict(mapping or {})
    unknown = sorted(set(mapping) - set(labels))
    if unknown:
        raise LabelMismatchError(
            f"{field} names {unknown}, which are not among labels {list(labels)}"
        )
    return mapping


def as_strings(value: Union[str, Sequence[str]], field: str) -> Tuple[str, ...]:
    """One string or several, each non-empty once stripped; returned stripped."""
    values = (value,) if isinstance(value, str) else tuple(value)
    if not values or not all(isinstance(v, str) and v.strip() for v in values):
        raise LabelMismatchError(f"{field}: expected one or more non-empty strings, got {value!r}")
    return tuple(v.strip() for v in values)


def resolve_verbalizers(
    labels: Sequence[str], verbalizers: Optional[Verbalizers], multi_label: bool
) -> Dict[str, Tuple[str, ...]]:
    """Each label's verbalizers (default: its name), checked.

    labels (Sequence[str]): the labels.
    verbalizers (Optional[Verbalizers]): label -> a string or a list of strings.
    multi_label (bool): whether labels are asked about one at a time (then they may share words).
    RETURNS (Dict[str, Tuple[str, ...]]): label -> its verbalizers, in label order.
    """
    given = check_label_keys(verbalizers, labels, "verbalizers")
    result = {
        label: as_strings(given.get(label, label), f"verbalizers[{label!r}]") for label in labels
    }
    if not multi_label:
        owners: Dict[str, str] = {}
        for label, forms in result.items():
            for form in forms:
                other = owners.setdefault(form.lower(), label)
                if other != label:
                    raise LabelMismatchError(
                        f"verbalizers of {other!r} and {label!r} both hold {form!r}: one answer "
                        "cannot name two labels"
                    )
    return result


def check_first_words(verbalizers: Dict[str, Sequence[str]]) -> None:
    """For a teacher that reads only the first answer token: no two labels' verbalizers may
    begin with the same word, or they cannot be told apart."""
    first_words: Dict[str, str] = {}
    for label, forms in verbalizers.items():
        for form in forms:
            word = form.split()[0].lower()
            other = first_words.setdefault(word, label)
            if other != label:
                raise LabelMismatchError(
                    f"verbalizers of {other!r} and {label!r} both begin with {word!r}: only the "
                    "first answer token is read, so give them different first words"
                )


def check_examples(
    examples: Optional[Sequence[Dict[str, Any]]], labels: Sequence[str], multi_label: bool
) -> List[Example]:
    """Few-shot examples, checked against the labels.

    examples (Optional[Sequence[Dict[str, Any]]]): {"text", "label"} (exclusive) or
        {"text", "labels"} (multi-label; "label" as a list also works).
    RETURNS (List[Example]): the examples.
    """
    checked = []
    for i, example in enumerate(examples or []):
        if not isinstance(example, dict) or not isinstance(example.get("text"), str):
            raise DistillError(f"examples[{i}] needs a 'text' string, got {example!r}")
        keys = ("labels", "label") if multi_label else ("label",)
        key = next((k for k in keys if k in example), None)
        if key is None:
            shape = (
                '{"text": ..., "labels": [...]}' if multi_label else '{"text": ..., "label": ...}'
            )
            raise DistillError(
                f"examples[{i}]: expected {shape} (multi_label = {multi_label}), got {example!r}"
            )
        given = example[key]
        named = [given] if isinstance(given, str) else list(given)
        unknown = [label for label in named if label not in labels]
        if unknown or (not multi_label and not isinstance(given, str)):
            raise LabelMismatchError(
                f"examples[{i}] ({example['text'][:40]!r}): {key} = {given!r}; use "
                f"{'label(s)' if multi_label else 'one label'} from {list(labels)}"
            )
        checked.append(Example(example["text"], tuple(named)))
    return checked


def check_format(
    field: str, template: str, allowed: Sequence[str], required: Sequence[str] = ()
) -> str:
    """A format string that uses only `allowed` fields and every `required` one.

    RETURNS (str): the template.
    """
    try:
        names = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError as err:
        raise DistillError(
            f"{field}: not a valid format string ({err}); write literal braces as {{{{ }}}}"
        ) from err
    unknown = sorted(names - set(allowed))
    if unknown:
        raise DistillError(f"{field}: unknown field(s) {unknown}; it may use {list(allowed)}")
    missing = [name for name in required if name not in names]
    if missing:
        raise DistillError(f"{field}: must contain {['{' + m + '}' for m in missing]}")
    return template


class LabelPrompt:
    """The labels, verbalizers, examples and instruction of one prompted teacher, checked.

    An exclusive prompt asks once per text, choosing between the labels; a multi-label one asks
    once per (text, label), choosing between yes and no. `label` arguments below name the label
    asked about (multi-label) and are None for an exclusive prompt.

    labels (Sequence[str]): the labels, in score order.
    instruction (str): the task; it may use {labels} (the answers, comma-separated) and, when
        multi-label, {label} (the label's name in the prompt).
    verbalizers (Optional[Verbalizers]): label -> answer string(s); see `resolve_verbalizers`.
    examples (Optional[Sequence[Dict[str, Any]]]): few-shot examples; see `check_examples`.
    multi_label (bool): one yes/no question per label.
    yes_verbalizers, no_verbalizers (Sequence[str]): the answers meaning yes and no.
    label_descriptions (Optional[Dict[str, str]]): label -> a description.
    """

    def __init__(
        self,
        labels: Sequence[str],
        instruction: str,
        *,
        verbalizers: Optional[Verbalizers] = None,
        examples: Optional[Sequence[Dict[str, Any]]] = None,
        multi_label: bool = False,
        yes_verbalizers: Union[str, Sequence[str]] = ("yes",),
        no_verbalizers: Union[str, Sequence[str]] = ("no",),
        label_descriptions: Optional[Dict[str, str]] = None,
    ) -> None:
        self.multi_label = bool(multi_label)
        self.labels = check_labels(labels, self.multi_label)
        self.verbalizers = resolve_verbalizers(self.labels, verbalizers, self.multi_label)
        self.yes_verbalizers = as_strings(yes_verbalizers, "yes_verbalizers")
        self.no_verbalizers = as_strings(no_verbalizers, "no_verbalizers")
        self.examples = check_examples(examples, self.labels, self.multi_label)
        self.label_descriptions = check_label_keys(
            label_descriptions, self.labels, "label_descriptions"
        )
        self.instruction = check_format("instruction", instruction, self.extra_fields + ("labels",))

    @property
    def extra_fields(self) -> Tuple[str, ...]:
        """The fields a multi-label prompt adds: the label asked about."""
        return ("label",) if self.multi_label else ()

    @property
    def questions(self) -> List[Optional[str]]:
        """What one text is asked: [None] (exclusive), or each label in turn."""
        return list(self.labels) if self.multi_label else [None]

    def name(self, label: str) -> str:
        """The label's name in prompts and answers: its first verbalizer."""
        return self.verbalizers[label][0]

    def classes(self, label: Optional[str] = None) -> List[Tuple[str, ...]]:
        """The verbalizers of each class one question chooses between: the labels', or yes/no."""
        if self.multi_label:
            return [self.yes_verbalizers, self.no_verbalizers]
        return [self.verbalizers[name] for name in self.labels]

    def answers(self) -> List[str]:
        """The answers a question offers, one per class (as {labels} lists them)."""
        return [forms[0] for forms in self.classes()]

    def fields(self, label: Optional[str] = None) -> Dict[str, str]:
        """{labels} and, multi-label, {label}: the fields every template may use."""
        if self.multi_label and label is None:
            raise DistillError("a multi-label prompt asks about one label: pass label=")
        extra = {"label": self.name(label)} if self.multi_label else {}
        return {"labels": ", ".join(self.answers()), **extra}

    def instruction_for(self, label: Optional[str] = None) -> str:
        """The instruction with its fields filled in."""
        return self.instruction.format(**self.fields(label))

    def shots(self, label: Optional[str] = None) -> List[Tuple[str, str]]:
        """The examples as (text, answer) pairs for one question."""
        if not self.multi_label:
            return [(ex.text, self.name(ex.labels[0])) for ex in self.examples]
        yes, no = self.answers()
        return [(ex.text, yes if label in ex.labels else no) for ex in self.examples]

    def descriptions(self) -> str:
        """ "- answer: description" lines for the labels that have one."""
        return "".join(
            f"- {self.name(label)}: {self.label_descriptions[label]}\n"
            for label in self.labels
            if label in self.label_descriptions
        )

    def chat_messages(self, text: str, label: Optional[str] = None) -> List[Dict[str, str]]:
        """The question as chat messages: each example a user turn ("Text: ...") and the
        assistant's answer, then the text; the instruction opens the first message."""
        messages = []
        for shot, answer in self.shots(label):
            messages.append({"role": "user", "content": f"Text: {shot}"})
            messages.append({"role": "assistant", "content": answer})
        messages.append({"role": "user", "content": f"Text: {text}"})
        messages[0]["content"] = f"{self.instruction_for(label)}\n\n{messages[0]['content']}"
        return messages

    def completion_prompt(self, text: str, label: Optional[str] = None) -> str:
        """The question as one prompt: the instruction, "Text: ...\\nAnswer: ..." per example,
        then the text and "Answer:"."""
        lines = [self.instruction_for(label), ""]
        lines.extend(f"Text: {shot}\nAnswer: {answer}\n" for shot, answer in self.shots(label))
        lines.append(f"Text: {text}\nAnswer:")
        return "\n".join(lines)


class TemplatePrompt(LabelPrompt):
    """A `LabelPrompt` rendered as one plain-text prompt from format-string templates (the HF
    prompt teacher's); each argument left None takes the default for exclusive or multi-label.

    template (Optional[str]): {instruction}, {labels}, {descriptions}, {examples}, {text}
        (multi-label also {label}); {text} (and {label}) required.
    example_template (Optional[str]): one few-shot example: {text}, {answer}, {labels} (multi-label
        also {label}); {answer} required.
    Other arguments as for `LabelPrompt`.
    """

    def __init__(
        self,
        labels: Sequence[str],
        instruction: Optional[str] = None,
        *,
        template: Optional[str] = None,
        example_template: Optional[str] = None,
        multi_label: bool = False,
        **settings: Any,
    ) -> None:
        defaults = DEFAULT_TEMPLATES[bool(multi_label)]
        instruction = defaults["instruction"] if instruction is None else instruction
        super().__init__(labels, instruction, multi_label=multi_label, **settings)
        self.template = defaults["template"] if template is None else template
        self.example_template = example_template
        if example_template is None:
            self.example_template = defaults["example_template"]
        extra = self.extra_fields
        check_format("template", self.template, TEMPLATE_FIELDS + extra, ("text",) + extra)
        check_format("example_template", self.example_template, EXAMPLE_FIELDS + extra, ("answer",))

    def render(self, text: str, label: Optional[str] = None) -> str:
        """The template with {instruction}, {labels}, {descriptions}, {examples}, {text} (and
        {label}) filled in; each example rendered with the example template."""
        fields = self.fields(label)
        shots = "".join(
            self.example_template.format(text=shot, answer=answer, **fields)
            for shot, answer in self.shots(label)
        )
        return self.template.format(
            instruction=self.instruction_for(label),
            descriptions=self.descriptions(),
            examples=shots,
            text=text,
            **fields,
        )


def calibration_offsets(content_free_scores: numpy.ndarray, exclusive: bool) -> numpy.ndarray:
    """Contextual calibration (Zhao et al., 2021): the average class probabilities of
    content-free inputs, as log-probabilities (exclusive) or as the logit of the average
    yes-probability (multi-label).

    content_free_scores (numpy.ndarray): the uncalibrated scores of the content-free inputs,
        (n_inputs, n_labels): log-probabilities or logits.
    RETURNS (numpy.ndarray): one offset per label, to subtract with `calibrate`.
    """
    scores = numpy.asarray(content_free_scores, dtype="float64")
    if exclusive:
        return numpy.log(numpy.exp(scores).mean(axis=0))
    p_yes = (1.0 / (1.0 + numpy.exp(-scores))).mean(axis=0)
    return numpy.log(p_yes) - numpy.log1p(-p_yes)


def calibrate(scores: numpy.ndarray, offsets: numpy.ndarray, exclusive: bool) -> numpy.ndarray:
    """Scores divided (in log space) by the content-free probabilities, renormalised when
    exclusive."""
    calibrated = scores - offsets[None, :]
    return log_softmax(calibrated) if exclusive else calibrated
