"""A teacher that is any OpenAI-compatible server (vLLM, llama.cpp server, TGI, OpenAI itself),
read through the log-probabilities of the first token of its answer.

The parts: a `LabelPrompt` (prompting.py: labels, verbalizers, examples, instruction), an
`OpenAIClient` (openai_client.py: HTTP, the API key, retries, deadlines, cancellation) and an
`AnswerTally` (openai_answers.py: how answers become scores). Exclusive: one request per text,
`max_tokens=1`, `temperature=0`, asking for the `top_logprobs` most likely first tokens
(`/v1/chat/completions`: `logprobs=true, top_logprobs=N`; `/v1/completions`: `logprobs=N`).
Multi-label (`multi_label = true`): one request per (text, label) with a yes/no question; the
label's logit is lp(yes) - lp(no).

Servers that return no log-probabilities: with `fallback_samples = k > 0` the teacher samples k
one-token answers per request (k requests) at temperature 1 and uses the label frequencies.
`method` says which was used ("logprobs" or "samples:k"); it is part of the fingerprint. The
teacher finds out with one probe request the first time `method`, `fingerprint` or `score` is
used.

A request that fails for good makes `score` raise `TeacherError` whose `index` is the position
of the text in `texts`. The API key is read from the environment variable that `api_key_env`
names, at each request: it never reaches the teacher's repr, fingerprint or pickle.
"""

import logging
import threading
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy

from ..errors import DistillError
from ..hf.loading import fingerprint_of
from ..registry import registry
from ..teacher_protocol import TeacherBase

# answer_matches, match_scores, token_matches and redact were defined here once: still importable.
from .openai_answers import (  # noqa: F401
    AnswerTally,
    answer_matches,
    has_logprobs,
    match_scores,
    read_logprobs,
    token_matches,
)
from .openai_client import OpenAIClient, Request, redact  # noqa: F401
from .prompting import LabelPrompt, check_first_words

logger = logging.getLogger(__name__)

REGISTERED_NAME = "spacy-distill.OpenAITeacher.v1"
DEFAULT_INSTRUCTION = (
    "Classify the text into exactly one of these categories: {labels}.\n"
    "Answer with the category name only."
)
DEFAULT_MULTILABEL_INSTRUCTION = 'Does the text belong to the category "{label}"? Answer yes or no.'


class OpenAITeacher(TeacherBase):
    """Scores texts with a model behind an OpenAI-compatible HTTP API.

    Requests run `max_concurrency` at a time through one client; the rows of `score` keep the
    order of the texts.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        labels: Sequence[str],
        *,
        api_key_env: Optional[str] = None,
        verbalizers: Optional[Dict[str, Union[str, Sequence[str]]]] = None,
        instruction: Optional[str] = None,
        examples: Optional[Sequence[Dict[str, Any]]] = None,
        endpoint: str = "chat",
        top_logprobs: int = 20,
        fallback_samples: int = 10,
        max_concurrency: int = 8,
        timeout: float = 60.0,
        max_retries: int = 5,
        backoff: float = 1.0,
        multi_label: bool = False,
        batch_size: int = 32,
    ) -> None:
        """
        base_url (str): the server, e.g. "http://localhost:8000" or "https://api.openai.com/v1"
            (a trailing "/v1" is optional: it is added when missing).
        model (str): the model name the server expects.
        labels (Sequence[str]): the labels, in score order.
        api_key_env (Optional[str]): the NAME of the environment variable holding the API key,
            e.g. "OPENAI_API_KEY"; None sends no Authorization header (a local server).
        verbalizers (Optional[Dict[str, Union[str, Sequence[str]]]]): label -> the words the model
            may answer for it; the first one is the label's name in the prompt. Default: the label.
        instruction (Optional[str]): the task, a format string; "{labels}" (and, multi-label,
            "{label}") is replaced by the label names. None: a default instruction.
        examples (Optional[Sequence[Dict[str, Any]]]): few-shot examples,
            {"text": ..., "label": ...} (exclusive) or {"text": ..., "labels": [...]} (multi-label).
        endpoint (str): "chat" (/v1/chat/completions) or "completions" (/v1/completions).
        top_logprobs (int): how many most likely first tokens to ask for.
        fallback_samples (int): k answers sampled per request when the server returns no
            log-probabilities; 0 makes that an error.
        max_concurrency (int): requests in flight at once.
        timeout (float): the total deadline of a request (of each attempt), in seconds, from
            sending it to the last byte of the answer.
        max_retries (int): retries after a 429, 408, 409 or 5xx answer, a request past its
            deadline, a connection error or an answer that cannot be read.
        backoff (float): the first retry waits about this many seconds, doubling each time, with
            jitter; a Retry-After header is honoured instead.
        multi_label (bool): one yes/no question per label; scores are logits.
        batch_size (int): texts per `score` call in `annotate`.
        """
        for name, value, least in (
            ("top_logprobs", top_logprobs, 1),
            ("fallback_samples", fallback_samples, 0),
            ("batch_size", batch_size, 1),
        ):
            if int(value) != value or value < least:
                raise DistillError(f"{name} must be an integer >= {least}, got {value!r}")
        default = DEFAULT_MULTILABEL_INSTRUCTION if multi_label else DEFAULT_INSTRUCTION
        self.prompt = LabelPrompt(
            labels,
            default if instruction is None else instruction,
            verbalizers=verbalizers,
            examples=examples,
            multi_label=multi_label,
        )
        if not multi_label:
            check_first_words(self.prompt.verbalizers)
        self.client = OpenAIClient.from_settings(base_url, model, locals())
        self.labels: Tuple[str, ...] = self.prompt.labels
        self.exclusive = not multi_label
        self.multi_label = bool(multi_label)
        self.verbalizers = self.prompt.verbalizers
        self.instruction = self.prompt.instruction
        self.examples = self.prompt.examples
        self.top_logprobs = int(top_logprobs)
        self.fallback_samples = int(fallback_samples)
        self.batch_size = int(batch_size)
        self.teacher_id = f"openai:{model}@{self.client.host}"
        self._method: Optional[str] = None
        self._fingerprint: Optional[str] = None
        self._lock = threading.Lock()
        self.n_unmatched = 0
        """Answers in which no top token matched any label (their labels all got the floor)."""
        self.n_stopped = 0
        """Answers that ended before their first token (also counted in n_unmatched)."""

    # The client's settings, as the teacher's own.
    base_url = property(lambda self: self.client.base_url)
    url = property(lambda self: self.client.url)
    model = property(lambda self: self.client.model)
    endpoint = property(lambda self: self.client.endpoint)
    api_key_env = property(lambda self: self.client.api_key_env)

    @property
    def method(self) -> str:
        """Either "logprobs", or "samples:k" when the server returns no log-probabilities
        (found with one probe request, the first time it is needed)."""
        if self._method is None:
            with self._lock:
                if self._method is None:
                    self._method = self._probe()
        return self._method

    @property
    def fingerprint(self) -> str:
        """sha256 of the server, model, endpoint, prompt, verbalizers, examples, labels and method
        (never the API key)."""
        if self._fingerprint is None:
            examples = [
                {"text": ex.text, "labels": list(ex.labels)}
                if self.multi_label
                else {"text": ex.text, "label": ex.labels[0]}
                for ex in self.examples
            ]
            parts = [REGISTERED_NAME, self.base_url, self.model, self.endpoint, self.instruction]
            parts += [self.verbalizers, examples, self.labels, self.multi_label, self.method]
            self._fingerprint = fingerprint_of(parts + [self.top_logprobs])
        return self._fingerprint

    def score(self, texts: Sequence[str]) -> numpy.ndarray:
        """Teacher scores for texts: log-probabilities (exclusive) or logits (multi-label).

        texts (Sequence[str]): the texts.
        RETURNS (numpy.ndarray): shape (len(texts), len(self.labels)), float32, rows in the order
            of the texts.
        RAISES TeacherError: a text's request failed for good; `index` is its position in texts.
        """
        if not len(texts):
            return numpy.zeros((0, len(self.labels)), dtype="float32")
        sample = self.method != "logprobs"
        questions = [None] if self.exclusive else list(range(len(self.labels)))
        jobs = [
            (i, q, s)
            for i in range(len(texts))
            for q in questions
            for s in range(self.fallback_samples if sample else 1)
        ]
        requests = [self._request(texts[i], q, s if sample else None, i) for i, q, s in jobs]
        tally = AnswerTally(len(texts), self.prompt.classes(), len(self.labels), self.exclusive)
        if sample:
            scores = tally.from_samples(
                jobs, self.client.post_all(requests, self.client.answer_text)
            )
        else:
            scores = tally.from_logprobs(
                jobs, self.client.post_all(requests, read_logprobs), self.client.redact
            )
        self.n_unmatched += tally.n_unmatched
        self.n_stopped += tally.n_stopped
        return scores

    def stats(self) -> Dict[str, Any]:
        """Counters since the teacher was built.

        RETURNS (Dict[str, Any]): method, n_requests (attempts sent), n_retries, n_unmatched
            (answers that named no label), n_stopped (answers that ended at once).
        """
        return {
            "method": self._method,
            "n_requests": self.client.n_requests,
            "n_retries": self.client.n_retries,
            "n_unmatched": self.n_unmatched,
            "n_stopped": self.n_stopped,
        }

    def close(self) -> None:
        """Close the HTTP connections (a later `score` opens new ones)."""
        self.client.close()

    def __repr__(self) -> str:
        return (
            f"OpenAITeacher(base_url={self.base_url!r}, model={self.model!r}, "
            f"endpoint={self.endpoint!r}, labels={list(self.labels)!r}, "
            f"multi_label={self.multi_label}, api_key_env={self.api_key_env!r}, "
            f"method={self._method!r})"
        )

    def __getstate__(self) -> Dict[str, Any]:
        return {**self.__dict__, "_lock": None}

    def __setstate__(self, state: Dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def _request(
        self, text: str, question: Optional[int], sample: Optional[int], index: int
    ) -> Request:
        """The request for one text (and label asked about, and sample number when sampling)."""
        label = None if question is None else self.labels[question]
        payload: Dict[str, Any] = {"model": self.model, "max_tokens": 1}
        if self.endpoint == "chat":
            payload["messages"] = self.prompt.chat_messages(text, label)
        else:
            payload["prompt"] = self.prompt.completion_prompt(text, label)
        if sample is not None:
            payload["temperature"] = 1.0
        else:
            payload["temperature"] = 0.0
            payload.update(self.client.logprobs_params(self.top_logprobs))
        # Not the text's position in its batch: `texts` is often length-sorted, and callers name
        # the text from TeacherError.index.
        what = "the request" + (f" about label {label!r}" if label is not None else "")
        if sample is not None:
            what += f" (sample {sample + 1} of {self.fallback_samples})"
        return Request(payload, what, index)

    def _probe(self) -> str:
        """Ask once (with a throwaway text) whether the server returns log-probabilities."""

        text = self.examples[0].text if self.examples else "Hello."
        request = self._request(text, None if self.exclusive else 0, None, None)
        if self.client.post(request._replace(what="the probe request"), has_logprobs):
            return "logprobs"
        if not self.fallback_samples:
            raise DistillError(
                f"{self.url}: the server ({self.model}) returns no logprobs; set "
                "fallback_samples = k to estimate probabilities from k sampled answers per request"
            )
        logger.warning(
            "%s returns no logprobs: sampling %d answers per request instead (method samples:%d)",
            self.url,
            self.fallback_samples,
            self.fallback_samples,
        )
        return f"samples:{self.fallback_samples}"


@registry.spacy_distill_teachers(REGISTERED_NAME)
def configure_openai_teacher(
    base_url: str,
    model: str,
    labels: List[str],
    api_key_env: Optional[str] = None,
    verbalizers: Optional[Dict[str, List[str]]] = None,
    instruction: Optional[str] = None,
    examples: Optional[List[Dict[str, Any]]] = None,
    endpoint: str = "chat",
    top_logprobs: int = 20,
    fallback_samples: int = 10,
    max_concurrency: int = 8,
    timeout: float = 60.0,
    max_retries: int = 5,
    backoff: float = 1.0,
    multi_label: bool = False,
    batch_size: int = 32,
) -> OpenAITeacher:
    """A model behind an OpenAI-compatible server (vLLM, llama.cpp, TGI, OpenAI), as a teacher.

    base_url (str): e.g. "http://localhost:8000/v1" ("/v1" is added when missing).
    model (str): the model name the server expects.
    labels (List[str]): the labels, in score order.
    api_key_env (Optional[str]): the name of the environment variable that holds the API key.
    verbalizers (Optional[Dict[str, List[str]]]): label -> answer words (default: the label).
    instruction (Optional[str]): the task, with "{labels}" / "{label}" filled in.
    examples (Optional[List[Dict[str, Any]]]): few-shot {"text", "label"} / {"text", "labels"}.
    endpoint (str): "chat" or "completions".
    top_logprobs (int): first tokens to ask log-probabilities for.
    fallback_samples (int): sampled answers per request when the server has no logprobs (0: error).
    max_concurrency (int): requests in flight.
    timeout (float): each request's total deadline, in seconds.
    max_retries (int): retries on 429/5xx/deadlines/connection errors/unreadable answers.
    backoff (float): the first retry's wait in seconds (doubling, with jitter).
    multi_label (bool): yes/no per label; scores are logits.
    batch_size (int): texts per `score` call.
    RETURNS (OpenAITeacher): the teacher.
    """
    return OpenAITeacher(
        base_url,
        model,
        labels,
        api_key_env=api_key_env,
        verbalizers=verbalizers,
        instruction=instruction,
        examples=examples,
        endpoint=endpoint,
        top_logprobs=top_logprobs,
        fallback_samples=fallback_samples,
        max_concurrency=max_concurrency,
        timeout=timeout,
        max_retries=max_retries,
        backoff=backoff,
        multi_label=multi_label,
        batch_size=batch_size,
    )
