"""A client for OpenAI-compatible servers (vLLM, llama.cpp's server, TGI, OpenAI itself), shared
by the server teacher (`openai_server.py`) and the server text generator
(`augment/generation.py`): HTTP through httpx, retries through tenacity.

- The API key is read from the environment variable `api_key_env` names, at each request: it is
  never stored, so it cannot reach a repr, a fingerprint, a pickle or a message. `redact` takes
  it (and any "Bearer <token>") out of whatever a server sends back before that is shown.
- Each attempt has a total deadline of `timeout` seconds, from sending the request to the last
  byte of the answer. httpx's timeouts bound each socket operation only, so a server that
  trickles its answer a byte at a time would otherwise hold a request as long as it likes.
- An attempt past its deadline, a 408, 409, 429 or 5xx answer, a connection error and a 200
  answer that cannot be read (`UnreadableAnswer`: not JSON, no choices, malformed logprobs) are
  retried `max_retries` times, after `backoff` seconds doubling each time (with jitter), or
  after the server's Retry-After. Other answers (400, 401, 403...) fail at once. Then
  `TeacherError` is raised, its `index` the request's `index`.
- `post_all` runs requests `max_concurrency` at a time and returns the answers in order; the
  first failure cancels the others: they stop before their next attempt or during a backoff
  wait, so none keeps retrying after the call has raised.

httpx and tenacity (pip install 'spacy-distill[openai]') are imported when a client is built,
so `import spacy_distill` and a packaged student never load them.
"""

import email.utils
import json
import logging
import os
import random
import re
import threading
import time
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from typing import Any, Callable, Dict, List, Mapping, NamedTuple, Optional, Sequence, Tuple
from urllib.parse import quote, urlsplit, urlunsplit

from ..errors import DistillError, TeacherError
from .openai_answers import UnreadableAnswer, answer_text

logger = logging.getLogger(__name__)

ENDPOINTS = {"chat": "/chat/completions", "completions": "/completions"}
# The keyword arguments of OpenAIClient that a teacher or generator passes on as it got them.
CLIENT_SETTINGS = (
    "endpoint",
    "api_key_env",
    "max_concurrency",
    "timeout",
    "max_retries",
    "backoff",
)
RETRY_STATUS = frozenset({408, 409, 429}) | frozenset(range(500, 600))
# Seconds: a longer Retry-After is cut to this (a server asking for hours is misconfigured).
MAX_RETRY_AFTER = 120.0
MAX_BACKOFF = 60.0
BODY_CHARS = 200
# A bearer token (RFC 6750's b64token), or the start of one in an answer cut short.
BEARER = re.compile(r"(?i)\b(bearer)(?:\s+|%20)[A-Za-z0-9\-._~+/]+=*")


class Cancelled(Exception):
    """Another request of the same `post_all` failed: this one stops instead of retrying."""


class _PastDeadline(Exception):
    """The answer was still arriving when the attempt's total deadline passed."""


class _Retryable(Exception):
    """One attempt failed in a way worth another; the message says how."""

    def __init__(self, message: str, retry_after: Optional[float] = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Request(NamedTuple):
    """One request: its JSON body, how messages name it, and its index for `TeacherError`."""

    payload: Dict[str, Any]
    what: str = "the request"
    index: Optional[int] = None


def require_client_libraries():
    """Import httpx and tenacity, or fail with the install command."""
    try:
        import httpx
        import tenacity
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise DistillError(
            "An OpenAI-compatible server needs httpx and tenacity: "
            "pip install 'spacy-distill[openai]'"
        ) from err
    return httpx, tenacity


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


def display_url(url: str) -> str:
    """The URL without user info, query or fragment (where a key could hide)."""
    parts = urlsplit(url)
    netloc = parts.hostname or ""
    if parts.port:
        netloc = f"{netloc}:{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def retry_after_seconds(value: Optional[str]) -> Optional[float]:
    """Seconds from a Retry-After header (seconds, decimals accepted, or an HTTP date), at most
    MAX_RETRY_AFTER; None when there is none or it cannot be read."""
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


class OpenAIClient:
    """Posts requests to one endpoint of an OpenAI-compatible server, with retries.

    base_url (str): e.g. "http://localhost:8000" or "https://api.openai.com/v1" (a trailing
        "/v1" is added when missing).
    model (str): the model name the server expects.
    endpoint (str): "chat" (/v1/chat/completions) or "completions" (/v1/completions).
    api_key_env (Optional[str]): the NAME of the environment variable holding the API key;
        None sends no Authorization header (a local server).
    max_concurrency (int): requests in flight at once in `post_all`.
    timeout (float): the total deadline of each attempt, in seconds.
    max_retries (int): retries of a request that failed in a way worth retrying.
    backoff (float): the first retry waits about this many seconds, doubling each time, with
        jitter; a Retry-After header is honoured instead.
    sleep (Optional[Callable[[float], None]]): waits between attempts (tests pass one that
        records); None waits on the call's cancel event, so a cancel ends the wait at once.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        endpoint: str = "chat",
        api_key_env: Optional[str] = None,
        max_concurrency: int = 8,
        timeout: float = 60.0,
        max_retries: int = 5,
        backoff: float = 1.0,
        sleep: Optional[Callable[[float], None]] = None,
    ) -> None:
        self._httpx, self._tenacity = require_client_libraries()
        if endpoint not in ENDPOINTS:
            raise DistillError(f"endpoint must be one of {sorted(ENDPOINTS)}, got {endpoint!r}")
        for name, value, least in (
            ("max_concurrency", max_concurrency, 1),
            ("max_retries", max_retries, 0),
        ):
            if int(value) != value or value < least:
                raise DistillError(f"{name} must be an integer >= {least}, got {value!r}")
        if timeout <= 0 or backoff < 0:
            raise DistillError(
                f"timeout must be > 0 and backoff >= 0, got {timeout!r} and {backoff!r}"
            )
        if api_key_env is not None and api_key_env not in os.environ:
            raise DistillError(
                f"api_key_env names the environment variable {api_key_env!r}, which is not set; "
                "export it, or leave api_key_env out for a server without keys"
            )
        api_base = base_url.rstrip("/")
        if not urlsplit(api_base).path.endswith("/v1"):
            api_base += "/v1"
        self._url = api_base + ENDPOINTS[endpoint]
        self.base_url = display_url(api_base)
        """The server's URL as shown: no user info, query or fragment."""
        self.url = display_url(self._url)
        """The endpoint's URL as shown."""
        self.model = model
        self.endpoint = endpoint
        self.api_key_env = api_key_env
        self.max_concurrency = int(max_concurrency)
        self.timeout = float(timeout)
        self.max_retries = int(max_retries)
        self.backoff = float(backoff)
        self.sleep = sleep
        self.n_requests = 0
        """Attempts sent, retries included."""
        self.n_retries = 0
        """Attempts that failed and were tried again."""
        self._client = None
        self._lock = threading.Lock()

    @classmethod
    def from_settings(
        cls, base_url: str, model: str, settings: Mapping[str, Any]
    ) -> "OpenAIClient":
        """A client from the CLIENT_SETTINGS found in `settings`, e.g. a caller's `locals()`
        (other keys are ignored; a missing one keeps its default).

        base_url (str): as for OpenAIClient.
        model (str): as for OpenAIClient.
        settings (Mapping[str, Any]): holds some of CLIENT_SETTINGS, and maybe more.
        RETURNS (OpenAIClient): the client.
        """
        return cls(
            base_url, model, **{key: settings[key] for key in CLIENT_SETTINGS if key in settings}
        )

    @property
    def host(self) -> str:
        """The server's host and port."""
        return urlsplit(self.base_url).netloc

    def logprobs_params(self, top_logprobs: int) -> Dict[str, Any]:
        """The payload fields that ask for the first token's `top_logprobs` most likely tokens."""
        if self.endpoint == "chat":
            return {"logprobs": True, "top_logprobs": top_logprobs}
        return {"logprobs": top_logprobs}

    def answer_text(self, data: Any) -> str:
        """`answer_text` for this client's endpoint."""
        return answer_text(data, self.endpoint)

    def redact(self, text: str, limit: Optional[int] = None) -> str:
        """`redact` with the key the environment holds now (it is never stored)."""
        return redact(text, os.environ.get(self.api_key_env) if self.api_key_env else None, limit)

    def post(
        self, request: Request, read: Callable[[Any], Any], cancel: Optional[threading.Event] = None
    ) -> Any:
        """POST with retries and return `read(the JSON answer)`.

        request (Request): the payload, its name in messages and its index.
        read (Callable[[Any], Any]): parses the JSON; raises UnreadableAnswer on an answer it
            cannot read, which is retried like a 5xx (a truncated or garbled body).
        cancel (Optional[threading.Event]): once set, stop (raise Cancelled) before the next
            attempt or during a backoff wait.
        RETURNS (Any): what `read` returns.
        RAISES (TeacherError): the request failed for good.
        """
        tenacity = self._tenacity
        cancel = cancel if cancel is not None else threading.Event()
        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self.max_retries + 1),
            retry=tenacity.retry_if_exception_type(_Retryable),
            wait=self._wait,
            sleep=lambda seconds: self._pause(seconds, cancel),
            before_sleep=lambda state: self._log_retry(request.what, state),
            reraise=True,
        )
        try:
            return retrying(self._attempt, request, read, cancel)
        except _Retryable as err:
            raise TeacherError(
                f"{self.url}: {request.what} failed after {self.max_retries + 1} attempts; "
                f"last: {err}",
                index=request.index,
            ) from None

    def post_all(self, requests: Sequence[Request], read: Callable[[Any], Any]) -> List[Any]:
        """`post` each request, `max_concurrency` at once; the answers in request order.

        The first failure is raised at once and cancels the other requests: they stop before
        their next attempt (one in flight ends within its deadline), rather than retrying on in
        the background for minutes and keeping the process from exiting.
        """
        cancel = threading.Event()
        if self.max_concurrency == 1 or len(requests) <= 1:
            return [self.post(request, read, cancel) for request in requests]
        pool = ThreadPoolExecutor(
            max_workers=min(self.max_concurrency, len(requests)), thread_name_prefix="openai-client"
        )
        try:
            futures = [pool.submit(self.post, request, read, cancel) for request in requests]
            done, _ = wait(futures, return_when=FIRST_EXCEPTION)
            for future in futures:  # the first failure in request order, for a stable message
                if future in done and future.exception() is not None:
                    raise future.exception()
            return [future.result() for future in futures]
        finally:
            cancel.set()
            pool.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        """Close the HTTP connections (a later request opens new ones)."""
        if self._client is not None:
            self._client.close()
            self._client = None

    def __getstate__(self) -> Dict[str, Any]:
        state = dict(self.__dict__)
        state.update(_client=None, _lock=None, _httpx=None, _tenacity=None)
        return state

    def __setstate__(self, state: Dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()
        self._httpx, self._tenacity = require_client_libraries()

    def _wait(self, state: Any) -> float:
        """Seconds before the next attempt: the server's Retry-After, else backoff with jitter."""
        err = state.outcome.exception()
        if getattr(err, "retry_after", None) is not None:
            return err.retry_after
        delay = min(self.backoff * 2 ** (state.attempt_number - 1), MAX_BACKOFF)
        return delay / 2 + random.uniform(0, delay / 2)

    def _pause(self, seconds: float, cancel: threading.Event) -> None:
        if self.sleep is not None:
            self.sleep(seconds)
            cancelled = cancel.is_set()
        else:
            cancelled = cancel.wait(seconds)
        if cancelled:
            raise Cancelled()

    def _log_retry(self, what: str, state: Any) -> None:
        with self._lock:
            self.n_retries += 1
        err = state.outcome.exception()
        logger.debug("%s: %s: %s; retry in %.2f s", self.url, what, err, state.next_action.sleep)

    def _attempt(
        self, request: Request, read: Callable[[Any], Any], cancel: threading.Event
    ) -> Any:
        """One attempt: the answer read, or _Retryable, TeacherError (not retried) or Cancelled."""
        httpx = self._httpx
        if cancel.is_set():
            raise Cancelled()
        try:
            status, headers, body = self._send(request.payload, cancel)
        except (_PastDeadline, httpx.TimeoutException):
            raise _Retryable(
                f"no complete answer within its total deadline ({self.timeout:g} s)"
            ) from None
        except (httpx.TransportError, httpx.DecodingError) as err:
            raise _Retryable(
                f"connection error ({type(err).__name__}: {self.redact(str(err))})"
            ) from None
        excerpt = self.redact(body, BODY_CHARS)
        if status in RETRY_STATUS:
            raise _Retryable(
                f"HTTP {status}: {excerpt!r}", retry_after_seconds(headers.get("Retry-After"))
            )
        if status != 200:
            hint = (
                "; check the key in the variable that api_key_env names"
                if status in (401, 403)
                else ""
            )
            raise TeacherError(
                f"{self.url}: {request.what} failed with HTTP {status} (not retried): "
                f"{excerpt!r}{hint}",
                index=request.index,
            )
        try:
            data = json.loads(body)
        except ValueError:
            why = "the body is not JSON"
        else:
            try:
                return read(data)
            except UnreadableAnswer as err:
                why = self.redact(str(err))
        raise _Retryable(f"cannot read the answer ({why}); the body begins {excerpt!r}")

    def _headers(self) -> Dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if self.api_key_env is not None:
            key = os.environ.get(self.api_key_env)
            if not key:
                raise DistillError(f"the environment variable {self.api_key_env!r} is not set")
            headers["Authorization"] = f"Bearer {key}"
        return headers

    def _get_client(self):
        with self._lock:
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
        that trickles its body is cut when the deadline passes; one that falls
        silent, by the read timeout. (The headers are read whole, each read bounded.)
        """
        deadline = time.monotonic() + self.timeout
        with self._lock:
            self.n_requests += 1
        client = self._get_client()
        with client.stream("POST", self._url, json=payload, headers=self._headers()) as response:
            chunks = []
            for chunk in response.iter_bytes():
                chunks.append(chunk)
                if cancel.is_set():
                    raise Cancelled()
                if time.monotonic() > deadline:
                    raise _PastDeadline()
            body = b"".join(chunks).decode(response.encoding or "utf-8", errors="replace")
            return response.status_code, response.headers, body
