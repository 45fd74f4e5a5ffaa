"""A teacher that is any OpenAI-compatible server (vLLM, llama.cpp server, TGI, OpenAI itself),
read through the log-probabilities of the first token of its answer.

How a label's score is made (exclusive labels):

1. One request per text, `max_tokens=1`, `temperature=0`, asking for the `top_logprobs` most
   likely first tokens (`/v1/chat/completions`: `logprobs=true, top_logprobs=N`;
   `/v1/completions`: `logprobs=N`).
2. A returned token *matches* a verbalizer when, with its leading whitespace stripped and both
   lower-cased, it is a non-empty start of the verbalizer: " Pos", "pos" and "POSITIVE" all match
   "positive"; "\\n" and "not" do not match "no". A label's score is the log-sum-exp of the
   log-probabilities of every top token that matches one of its verbalizers.
3. A label that no top token matches gets a floor: the smallest log-probability seen minus
   log(k), k the number of top tokens returned (it is less likely than anything listed, and the
   rest of the mass is spread over many tokens), so it keeps a small probability.
4. log-softmax over the labels: the scores are log-probabilities over the label set.
5. An answer that ended before its first token (finish_reason "stop", an empty list of
   log-probabilities: llama.cpp's server does this when end-of-text is the most likely first
   token) names no label: every label gets the same score, as when no top token matches.

Multi-label (`multi_label = true`): one request per (text, label) with a yes/no question; the
label's logit is lp(yes) - lp(no), each read as above (the verbalizers "yes" and "no").

Servers that return no log-probabilities: with `fallback_samples = k > 0` the teacher samples k
one-token answers per request (k requests) at temperature 1 and uses the label frequencies with
add-one smoothing, p(label) = (count + 1) / (k_matched + n_labels) (an answer matches as a
token does, or when it begins with a whole verbalizer: "Spam." counts for "spam"; one that
matches no label counts for none, one that matches several is split among them; multi-label:
logit = log((yes + 1) / (no + 1))). `method` says which was used ("logprobs" or "samples:k"); it
is part of the fingerprint. The teacher finds out with one probe request the first time
`method`, `fingerprint` or `score` is used.

Each request (each attempt) has a total deadline of `timeout` seconds, from sending it to the
last byte of its answer: httpx's own timeouts bound each socket operation, so a server that
trickles its answer a byte at a time would otherwise hold a request for as long as it likes. A
request past its deadline, a 429, 408, 409 or 5xx answer, a connection error and a 200 answer
that cannot be read (not JSON, no choices, malformed logprobs) are retried `max_retries` times
with backoff; then `score` raises `TeacherError` whose `index` is the position of the text in
`texts`. The first failure cancels the other requests of the call: they stop before their next
attempt or during a backoff wait, so none keeps retrying after `score` has raised.

The API key is read from the environment variable that `api_key_env` names, at each request: it
is never stored on the teacher, so it cannot reach its repr, its fingerprint, the targets or
an error message (a server's answer that echoes it, or any "Bearer <token>", has it replaced by
"***" before the answer is cut to an excerpt).

httpx (pip install 'spacy-distill[openai]') is imported when the teacher is built, so
`import spacy_distill` and a packaged student never load it.
"""
import email.utils
import json
import logging
import math
import os
import random
import re
import threading
import time
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union
from urllib.parse import quote, urlsplit, urlunsplit

import numpy

from ..errors import DistillError, LabelMismatchError, TeacherError
from ..registry import registry
from .base import log_softmax
from .hf_common import fingerprint_of

logger = logging.getLogger(__name__)

REGISTERED_NAME = "spacy-distill.OpenAITeacher.v1"
ENDPOINTS = {"chat": "/chat/completions", "completions": "/completions"}
RETRY_STATUS = frozenset({408, 409, 429}) | frozenset(range(500, 600))
# Seconds: a longer Retry-After is cut to this (a server asking for hours is misconfigured).
MAX_RETRY_AFTER = 120.0
MAX_BACKOFF = 60.0
YES, NO = "yes", "no"
BODY_CHARS = 200
# A bearer token (RFC 6750's b64token), or the start of one in an answer cut short.
BEARER = re.compile(r"(?i)\b(bearer)(?:\s+|%20)[A-Za-z0-9\-._~+/]+=*")

DEFAULT_INSTRUCTION = (
    "Classify the text into exactly one of these categories: {labels}.\n"
    "Answer with the category name only."
)
DEFAULT_MULTILABEL_INSTRUCTION = (
    'Does the text belong to the category "{label}"? Answer yes or no.'
)


class _NoLogprobs(Exception):
    """The server answered well-formed JSON but without log-probabilities."""


class _Unparseable(Exception):
    """The response body is not the JSON an OpenAI-compatible server sends."""


class _StoppedAtOnce(Exception):
    """The answer ended before its first token: log-probabilities were sent, for no token."""


class _PastDeadline(Exception):
    """The answer was still arriving when the request's total deadline passed."""


class _Cancelled(Exception):
    """Another request of the same call failed: this one stops instead of retrying."""


def _require_httpx():
    try:
        import httpx
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise DistillError(
            "The OpenAI-compatible teacher needs httpx: pip install 'spacy-distill[openai]'"
        ) from err
    return httpx


def token_matches(token: str, verbalizer: str) -> bool:
    """Whether a first answer token is the start of a verbalizer (leading whitespace stripped,
    case-insensitive, non-empty)."""
    token = token.lstrip().lower()
    return bool(token) and verbalizer.lower().startswith(token)


def answer_matches(answer: str, verbalizer: str) -> bool:
    """Whether a sampled answer names a verbalizer: it is the start of the verbalizer (as a
    first token is), or it begins with the whole verbalizer followed by a non-word character
    ("Spam." matches "spam"; "not sure" does not match "no"), for servers that send more than
    the one token asked for."""
    if token_matches(answer, verbalizer):
        return True
    answer, verbalizer = answer.strip().lower(), verbalizer.lower()
    rest = answer[len(verbalizer):]
    return answer.startswith(verbalizer) and not (rest[:1].isalnum() or rest[:1] == "_")


def _logsumexp(values: Sequence[float]) -> float:
    top = max(values)
    return top + math.log(sum(math.exp(v - top) for v in values))


def match_scores(
    top: Sequence[Tuple[str, float]], verbalizers: Sequence[Sequence[str]]
) -> Tuple[List[float], int]:
    """Per-class log-scores from a first token's top log-probabilities.

    top (Sequence[Tuple[str, float]]): (token, logprob) pairs, at least one.
    verbalizers (Sequence[Sequence[str]]): each class's verbalizers.
    RETURNS (Tuple[List[float], int]): a score per class (log-sum-exp of the matching tokens, or
        the floor min(logprob) - log(k)), and how many classes no token matched.
    """
    floor = min(lp for _, lp in top) - math.log(len(top))
    scores, unmatched = [], 0
    for forms in verbalizers:
        hits = [lp for token, lp in top if any(token_matches(token, v) for v in forms)]
        if hits:
            scores.append(_logsumexp(hits))
        else:
            scores.append(floor)
            unmatched += 1
    return scores, unmatched


def redact(text: str, secret: Optional[str], limit: Optional[int] = None) -> str:
    """Text from a server (a body, a header, an error) made safe to show: the secret, as is or
    JSON- or URL-escaped, and any "Bearer <token>" are replaced by "***", and only then is the
    text cut to `limit` characters (cut first, a key at the cut would leave its start behind).

    text (str): the text.
    secret (Optional[str]): the API key, or None.
    limit (Optional[int]): the most characters kept; None keeps all.
    RETURNS (str): the redacted text.
    """
    if secret:
        forms = {secret, json.dumps(secret)[1:-1], quote(secret, safe="")}
        forms.add(secret.replace("/", "\\/"))  # JSON may escape "/"
        for form in sorted(forms, key=len, reverse=True):
            text = text.replace(form, "***")
    text = BEARER.sub(r"\1 ***", text)
    return text if limit is None else text[:limit]


def _display_url(url: str) -> str:
    """The URL without user info, query or fragment (where a key could hide)."""
    parts = urlsplit(url)
    netloc = parts.hostname or ""
    if parts.port:
        netloc = f"{netloc}:{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _retry_after(value: Optional[str]) -> Optional[float]:
    """Seconds from a Retry-After header (seconds, decimals accepted, or an HTTP date)."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when is None:
            return None
        seconds = when.timestamp() - time.time()
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


class OpenAITeacher:
    """Scores texts with a model behind an OpenAI-compatible HTTP API.

    Requests run on a thread pool of `max_concurrency` workers sharing one httpx client;
    the rows of `score` keep the order of the texts.
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
        instruction (Optional[str]): the task; "{labels}" (exclusive) or "{label}" (multi-label)
            is replaced by the label names. None: a default instruction.
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
        self._httpx = _require_httpx()
        if endpoint not in ENDPOINTS:
            raise DistillError(f"endpoint must be one of {sorted(ENDPOINTS)}, got {endpoint!r}")
        for name, value, least in (
            ("top_logprobs", top_logprobs, 1),
            ("fallback_samples", fallback_samples, 0),
            ("max_concurrency", max_concurrency, 1),
            ("max_retries", max_retries, 0),
            ("batch_size", batch_size, 1),
        ):
            if int(value) != value or value < least:
                raise DistillError(f"{name} must be an integer >= {least}, got {value!r}")
        if timeout <= 0 or backoff < 0:
            raise DistillError(
                f"timeout must be > 0 and backoff >= 0, got {timeout!r} and {backoff!r}"
            )
        labels = tuple(labels)
        if len(set(labels)) != len(labels):
            raise LabelMismatchError(f"labels repeat a name: {list(labels)}")
        if len(labels) < (1 if multi_label else 2):
            raise LabelMismatchError(
                f"labels {list(labels)}: an exclusive teacher needs two labels or more"
            )
        if api_key_env is not None and api_key_env not in os.environ:
            raise DistillError(
                f"api_key_env names the environment variable {api_key_env!r}, which is not set; "
                "export it, or leave api_key_env out for a server without keys"
            )
        self.labels: Tuple[str, ...] = labels
        self.exclusive = not multi_label
        self.multi_label = bool(multi_label)
        api_base = base_url.rstrip("/")
        if not urlsplit(api_base).path.endswith("/v1"):
            api_base += "/v1"
        self._url = api_base + ENDPOINTS[endpoint]
        self.base_url = _display_url(api_base)
        self.url = _display_url(self._url)
        self.model = model
        self.api_key_env = api_key_env
        self.verbalizers = self._check_verbalizers(labels, verbalizers or {})
        self.instruction = instruction if instruction is not None else (
            DEFAULT_MULTILABEL_INSTRUCTION if multi_label else DEFAULT_INSTRUCTION
        )
        self.examples = self._check_examples(list(examples or []))
        self.endpoint = endpoint
        self.top_logprobs = int(top_logprobs)
        self.fallback_samples = int(fallback_samples)
        self.max_concurrency = int(max_concurrency)
        self.timeout = float(timeout)
        self.max_retries = int(max_retries)
        self.backoff = float(backoff)
        self.batch_size = int(batch_size)
        host = urlsplit(self.base_url).netloc
        self.teacher_id = f"openai:{model}@{host}"
        self._method: Optional[str] = None
        self._fingerprint: Optional[str] = None
        self._client = None
        self._lock = threading.Lock()
        self._client_lock = threading.Lock()
        self.n_unmatched = 0
        """Answers in which no top token matched any label (their labels all got the floor)."""
        self.n_stopped = 0
        """Answers that ended before their first token (also counted in n_unmatched)."""

    # -- configuration -------------------------------------------------------------------------

    def _check_verbalizers(self, labels, verbalizers) -> Dict[str, Tuple[str, ...]]:
        unknown = sorted(set(verbalizers) - set(labels))
        if unknown:
            raise LabelMismatchError(
                f"verbalizers name label(s) {unknown} that are not in labels {list(labels)}"
            )
        result: Dict[str, Tuple[str, ...]] = {}
        for label in labels:
            forms = verbalizers.get(label, (label,))
            forms = (forms,) if isinstance(forms, str) else tuple(forms)
            if not forms or not all(isinstance(f, str) and f.strip() for f in forms):
                raise LabelMismatchError(
                    f"verbalizers[{label!r}] must be a non-empty list of non-empty strings, "
                    f"got {forms!r}"
                )
            result[label] = tuple(f.strip() for f in forms)
        if not self.multi_label:
            # Only the first answer token is read: two labels whose verbalizers begin with the
            # same word cannot be told apart.
            first_words: Dict[str, str] = {}
            for label, forms in result.items():
                for form in forms:
                    word = form.split()[0].lower()
                    other = first_words.setdefault(word, label)
                    if other != label:
                        raise LabelMismatchError(
                            f"verbalizers of {other!r} and {label!r} both begin with {word!r}: "
                            "only the first answer token is read, so give them different first "
                            "words"
                        )
        return result

    def _check_examples(self, examples: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
        checked = []
        key = "labels" if not self.exclusive else "label"
        for i, example in enumerate(examples):
            if not isinstance(example, dict) or not isinstance(example.get("text"), str):
                raise DistillError(f"examples[{i}] needs a 'text' string, got {example!r}")
            if key not in example:
                raise DistillError(f"examples[{i}] needs {key!r} (multi_label={self.multi_label})")
            given = example[key]
            named = [given] if isinstance(given, str) else list(given)
            unknown = [label for label in named if label not in self.labels]
            if unknown or (self.exclusive and not isinstance(given, str)):
                raise LabelMismatchError(
                    f"examples[{i}].{key} = {given!r}: use label(s) from {list(self.labels)}"
                )
            checked.append({"text": example["text"], key: given if self.exclusive else named})
        return checked

    # -- the public members ---------------------------------------------------------------------

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
            self._fingerprint = fingerprint_of(
                [
                    REGISTERED_NAME,
                    self.base_url,
                    self.model,
                    self.endpoint,
                    self.instruction,
                    self.verbalizers,
                    self.examples,
                    self.labels,
                    self.multi_label,
                    self.method,
                    self.top_logprobs,
                ]
            )
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
        method = self.method
        questions = [None] if self.exclusive else list(range(len(self.labels)))
        samples = 1 if method == "logprobs" else self.fallback_samples
        jobs = [
            (i, q, s) for i in range(len(texts)) for q in questions for s in range(samples)
        ]
        results = self._run(texts, jobs, sample=method != "logprobs")
        if method == "logprobs":
            return self._from_logprobs(texts, results)
        return self._from_samples(texts, results)

    def close(self) -> None:
        """Close the HTTP connections (a later `score` opens new ones)."""
        if self._client is not None:
            self._client.close()
            self._client = None

    def __repr__(self) -> str:
        return (
            f"OpenAITeacher(base_url={self.base_url!r}, model={self.model!r}, "
            f"endpoint={self.endpoint!r}, labels={list(self.labels)!r}, "
            f"multi_label={self.multi_label}, api_key_env={self.api_key_env!r}, "
            f"method={self._method!r})"
        )

    def __getstate__(self) -> Dict[str, Any]:
        state = dict(self.__dict__)
        state.update(_client=None, _lock=None, _client_lock=None, _httpx=None)
        return state

    def __setstate__(self, state: Dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()
        self._client_lock = threading.Lock()
        self._httpx = _require_httpx()

    # -- prompts --------------------------------------------------------------------------------

    def _class_forms(self, question: Optional[int]) -> List[Tuple[str, ...]]:
        """The verbalizers of each class one request chooses between."""
        if question is None:
            return [self.verbalizers[label] for label in self.labels]
        return [(YES,), (NO,)]

    def _instruction_for(self, question: Optional[int]) -> str:
        if question is None:
            names = ", ".join(self.verbalizers[label][0] for label in self.labels)
            return self.instruction.replace("{labels}", names)
        return self.instruction.replace("{label}", self.verbalizers[self.labels[question]][0])

    def _answer_for(self, example: Dict[str, Any], question: Optional[int]) -> str:
        if question is None:
            return self.verbalizers[example["label"]][0]
        return YES if self.labels[question] in example["labels"] else NO

    def _payload(self, text: str, question: Optional[int], sample: bool) -> Dict[str, Any]:
        instruction = self._instruction_for(question)
        shots = [(ex["text"], self._answer_for(ex, question)) for ex in self.examples]
        payload: Dict[str, Any] = {"model": self.model, "max_tokens": 1}
        if self.endpoint == "chat":
            messages = []
            for shot_text, answer in shots:
                messages.append({"role": "user", "content": f"Text: {shot_text}"})
                messages.append({"role": "assistant", "content": answer})
            messages.append({"role": "user", "content": f"Text: {text}"})
            messages[0]["content"] = f"{instruction}\n\n{messages[0]['content']}"
            payload["messages"] = messages
        else:
            prompt = [instruction, ""]
            for shot_text, answer in shots:
                prompt.append(f"Text: {shot_text}\nAnswer: {answer}\n")
            prompt.append(f"Text: {text}\nAnswer:")
            payload["prompt"] = "\n".join(prompt)
        if sample:
            payload["temperature"] = 1.0
        else:
            payload["temperature"] = 0.0
            if self.endpoint == "chat":
                payload.update(logprobs=True, top_logprobs=self.top_logprobs)
            else:
                payload["logprobs"] = self.top_logprobs
        return payload

    # -- HTTP -----------------------------------------------------------------------------------

    def _headers(self) -> Dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if self.api_key_env is not None:
            key = os.environ.get(self.api_key_env)
            if not key:
                raise DistillError(f"the environment variable {self.api_key_env!r} is not set")
            headers["Authorization"] = f"Bearer {key}"
        return headers

    def _redact(self, text: str, limit: Optional[int] = None) -> str:
        """`redact` with the key the environment holds now (it is never stored)."""
        return redact(text, os.environ.get(self.api_key_env) if self.api_key_env else None, limit)

    def _get_client(self):
        with self._client_lock:
            if self._client is None:
                httpx = self._httpx
                self._client = httpx.Client(
                    timeout=httpx.Timeout(self.timeout),
                    limits=httpx.Limits(
                        max_connections=self.max_concurrency,
                        max_keepalive_connections=self.max_concurrency,
                    ),
                )
            return self._client

    def _send(self, payload: Dict[str, Any], cancel: threading.Event) -> Tuple[int, Any, str]:
        """One attempt: (status, headers, body text), the body read within the deadline.

        httpx's timeouts (`timeout` seconds too) bound each connect, write and read, not the
        whole: so the body is streamed and the deadline checked as each piece arrives. A server
        that trickles its body is cut when the deadline passes; one that falls silent, by the
        read timeout. (The headers are read whole, each read bounded by the read timeout.)
        """
        deadline = time.monotonic() + self.timeout
        client = self._get_client()
        with client.stream("POST", self._url, json=payload, headers=self._headers()) as response:
            chunks = []
            for chunk in response.iter_bytes():
                chunks.append(chunk)
                if cancel.is_set():
                    raise _Cancelled()
                if time.monotonic() > deadline:
                    raise _PastDeadline()
            body = b"".join(chunks).decode(response.encoding or "utf-8", errors="replace")
            return response.status_code, response.headers, body

    def _post(
        self,
        payload: Dict[str, Any],
        what: str,
        read: Callable[[Any], Any],
        cancel: Optional[threading.Event] = None,
        index: Optional[int] = None,
    ) -> Any:
        """POST with retries and return `read(the JSON answer)`.

        payload (Dict[str, Any]): the request.
        what (str): the request in messages, e.g. "the request about label 'spam'".
        read (Callable[[Any], Any]): parses the JSON; raises _Unparseable on an answer it cannot
            read, which is retried like a 5xx (a truncated or garbled body).
        cancel (Optional[threading.Event]): once set, stop (raise _Cancelled) before the next
            attempt or during a backoff wait.
        index (Optional[int]): the text's position in `score`'s texts, for TeacherError.
        RETURNS (Any): what `read` returns.
        """
        httpx = self._httpx
        cancel = cancel if cancel is not None else threading.Event()
        attempts = self.max_retries + 1
        last = ""
        for attempt in range(attempts):
            if cancel.is_set():
                raise _Cancelled()
            retry_after = None
            try:
                status, headers, body = self._send(payload, cancel)
            except (_PastDeadline, httpx.TimeoutException):
                last = f"no complete answer within its total deadline ({self.timeout:g} s)"
            except (httpx.TransportError, httpx.DecodingError) as err:
                last = f"connection error ({type(err).__name__}: {self._redact(str(err))})"
            else:
                excerpt = self._redact(body, BODY_CHARS)
                if status == 200:
                    try:
                        data = json.loads(body)
                    except ValueError:
                        why = "the body is not JSON"
                    else:
                        try:
                            return read(data)
                        except _Unparseable as err:
                            why = self._redact(str(err))
                    last = f"cannot read the answer ({why}); the body begins {excerpt!r}"
                elif status in RETRY_STATUS:
                    last = f"HTTP {status}: {excerpt!r}"
                    retry_after = _retry_after(headers.get("Retry-After"))
                else:
                    hint = (
                        "; check the key in the variable that api_key_env names"
                        if status in (401, 403)
                        else ""
                    )
                    raise TeacherError(
                        f"{self.url}: {what} failed with HTTP {status} (not retried): "
                        f"{excerpt!r}{hint}",
                        index=index,
                    )
            if attempt + 1 < attempts:
                if retry_after is None:
                    delay = min(self.backoff * 2**attempt, MAX_BACKOFF)
                    retry_after = delay / 2 + random.uniform(0, delay / 2)
                logger.debug("%s: %s: %s; retry in %.2f s", self.url, what, last, retry_after)
                if cancel.wait(retry_after):
                    raise _Cancelled()
        raise TeacherError(
            f"{self.url}: {what} failed after {attempts} attempts; last: {last}", index=index
        )

    def _gather(
        self, jobs: Sequence[Any], call: Callable[[Any, threading.Event], Any]
    ) -> List[Any]:
        """`call(job, cancel)` for each job, `max_concurrency` at once; results in job order.

        The first failure is raised at once and sets `cancel`: the other jobs stop before their
        next attempt (a request in flight ends within its deadline), rather than retrying on
        in the background for minutes and keeping the process from exiting.
        """
        cancel = threading.Event()
        if self.max_concurrency == 1 or len(jobs) <= 1:
            return [call(job, cancel) for job in jobs]
        pool = ThreadPoolExecutor(
            max_workers=min(self.max_concurrency, len(jobs)), thread_name_prefix="openai-teacher"
        )
        try:
            futures = [pool.submit(call, job, cancel) for job in jobs]
            done, _ = wait(futures, return_when=FIRST_EXCEPTION)
            for future in futures:  # the first failure in job order, for a stable message
                if future in done and future.exception() is not None:
                    raise future.exception()
            return [future.result() for future in futures]
        finally:
            cancel.set()
            pool.shutdown(wait=False, cancel_futures=True)

    # -- responses ------------------------------------------------------------------------------

    def _top_tokens(self, data: Any) -> List[Tuple[str, float]]:
        """The first answer token's top (token, logprob) pairs; _NoLogprobs when there are none."""
        try:
            choice = data["choices"][0]
        except (KeyError, IndexError, TypeError):
            raise _Unparseable("no choices[0]") from None
        if not isinstance(choice, dict):
            raise _Unparseable("choices[0] is not an object")
        logprobs = choice.get("logprobs")
        if not logprobs:
            raise _NoLogprobs()
        if choice.get("finish_reason") == "stop" and isinstance(logprobs, dict):
            generated = logprobs.get("content", logprobs.get("top_logprobs"))
            if isinstance(generated, list) and not generated:
                raise _StoppedAtOnce()
        try:
            if "content" in logprobs:  # chat
                content = logprobs["content"]
                if not content:
                    raise _NoLogprobs()
                entries = content[0].get("top_logprobs") or []
                top = [(e["token"], float(e["logprob"])) for e in entries]
            else:  # completions: one {token: logprob} dict per position
                positions = logprobs.get("top_logprobs") or []
                if not positions or not positions[0]:
                    raise _NoLogprobs()
                first = positions[0]
                if isinstance(first, dict):
                    top = [(token, float(lp)) for token, lp in first.items()]
                else:  # some servers send [{"token", "logprob"}, ...]
                    top = [(e["token"], float(e["logprob"])) for e in first]
        except (KeyError, IndexError, TypeError, ValueError, AttributeError) as err:
            raise _Unparseable(f"malformed logprobs ({type(err).__name__}: {err})") from None
        # A lone sampled token is no distribution: treat it as "no logprobs".
        if not top:
            raise _NoLogprobs()
        if not all(math.isfinite(lp) or lp == -math.inf for _, lp in top):
            raise _Unparseable("a logprob is NaN or +inf")
        top = [(token, lp) for token, lp in top if lp > -math.inf]
        if not top:
            raise _Unparseable("every logprob is -inf")
        return top

    def _answer_text(self, data: Any) -> str:
        try:
            choice = data["choices"][0]
            if self.endpoint == "chat":
                text = choice["message"].get("content")
            else:
                text = choice["text"]
        except (KeyError, IndexError, TypeError, AttributeError):
            raise _Unparseable("no answer text in choices[0]") from None
        if text is not None and not isinstance(text, str):
            raise _Unparseable("the answer text is not a string")
        return text or ""

    def _probe(self) -> str:
        """Ask once (with a throwaway text) whether the server returns log-probabilities."""

        def has_logprobs(data: Any) -> bool:
            try:
                self._top_tokens(data)
            except _StoppedAtOnce:
                pass  # the server sent (empty) log-probabilities: it has them
            except _NoLogprobs:
                return False
            return True

        text = self.examples[0]["text"] if self.examples else "Hello."
        payload = self._payload(text, None if self.exclusive else 0, False)
        if self._post(payload, "the probe request", has_logprobs):
            return "logprobs"
        if not self.fallback_samples:
            raise DistillError(
                f"{self.url}: the server ({self.model}) returns no logprobs; set "
                "fallback_samples = k to estimate probabilities from k sampled answers per request"
            )
        logger.warning(
            "%s returns no logprobs: sampling %d answers per request instead (method samples:%d)",
            self.url, self.fallback_samples, self.fallback_samples,
        )
        return f"samples:{self.fallback_samples}"

    def _run(self, texts: Sequence[str], jobs, sample: bool) -> Dict[Tuple, Any]:
        """Run the jobs (text index, question, sample number) concurrently; results by job."""

        def read(data: Any) -> Any:
            try:
                return self._answer_text(data) if sample else self._top_tokens(data)
            except _StoppedAtOnce:
                return None
            except _NoLogprobs:
                raise _Unparseable("no logprobs, though the probe request had them") from None

        def one(job, cancel: threading.Event):
            i, question, s = job
            # Not the text's position: `texts` is often a length-sorted batch, and callers name
            # the text from TeacherError.index.
            what = "the request"
            if question is not None:
                what += f" about label {self.labels[question]!r}"
            if sample:
                what += f" (sample {s + 1} of {self.fallback_samples})"
            payload = self._payload(texts[i], question, sample)
            return self._post(payload, what, read, cancel, index=i)

        return dict(zip(jobs, self._gather(jobs, one)))

    def _from_logprobs(self, texts: Sequence[str], results) -> numpy.ndarray:
        scores = numpy.zeros((len(texts), len(self.labels)), dtype="float64")
        for (i, question, _), top in results.items():
            if top is None:  # stopped before its first token: no label is more likely
                self.n_stopped += 1
                class_scores = [0.0] * len(self._class_forms(question))
                unmatched = len(class_scores)
            else:
                class_scores, unmatched = match_scores(top, self._class_forms(question))
            if unmatched == len(class_scores):
                self.n_unmatched += 1
                shown = self._redact(repr((top or [])[:5]))
                logger.debug("text %d: no top token matches a label: %s", i, shown)
            if question is None:
                scores[i] = class_scores
            else:
                scores[i, question] = class_scores[0] - class_scores[1]
        if self.exclusive:
            scores = log_softmax(scores)
        return scores.astype("float32")

    def _from_samples(self, texts: Sequence[str], results) -> numpy.ndarray:
        n_classes = len(self.labels) if self.exclusive else 2
        counts = numpy.zeros((len(texts), 1 if self.exclusive else len(self.labels), n_classes))
        for (i, question, _), answer in results.items():
            forms = self._class_forms(question)
            hits = [c for c, vs in enumerate(forms) if any(answer_matches(answer, v) for v in vs)]
            if not hits:
                self.n_unmatched += 1
            for c in hits:  # an answer that fits several classes counts for each, split evenly
                counts[i, 0 if question is None else question, c] += 1.0 / len(hits)
        smoothed = counts + 1.0
        if self.exclusive:
            probs = smoothed[:, 0, :]
            scores = numpy.log(probs / probs.sum(axis=1, keepdims=True))
        else:
            scores = numpy.log(smoothed[:, :, 0]) - numpy.log(smoothed[:, :, 1])
        return scores.astype("float32")


@registry.teachers(REGISTERED_NAME)
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
