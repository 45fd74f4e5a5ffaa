"""A fake OpenAI-compatible server for tests: http.server in a thread on 127.0.0.1 (a free port),
answering /v1/chat/completions and /v1/completions with first-token log-probabilities, or with
one of the faults a real server or proxy shows.

    with serve() as server:
        server.per_text["free cash"] = fault("500")        # every request for that text
        server.per_text["lunch"] = [fault("trickle"), fault("ok")]   # in turn, then answers
        server.script = [fault("429", retry_after=0.1)]  # the next request, whatever its text
        OpenAITeacher(server.url, "fake-model", ...).score([...])

An action is a dict (build it with `fault`): status, headers, body, hang (seconds, None: until
the server stops), trickle (seconds per byte of the body), truncate (the share of the answer
kept), logprobs (False: an answer without them), echo_auth (echo the Authorization header).
"""

import contextlib
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Dict, Iterator, List, Optional, Set, Tuple, Union

Action = Dict[str, Any]

MODES = ("ok", "500", "429", "truncated", "not_json", "trickle", "hang", "no_logprobs", "key_echo")
PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY")

SPAM_TOP = [("spam", -0.2), (" Spam", -2.0), ("ham", -3.0), ("The", -4.0)]
HAM_TOP = [("ham", -0.1), ("H", -2.5), ("spam", -3.5), ("I", -6.0)]


def fault(mode: str, **options: Any) -> Action:
    """What the server does with one request.

    mode (str): one of MODES.
        "ok": the answer. "500": HTTP 500. "429": HTTP 429 with Retry-After (`retry_after`
        seconds, default 0.1). "truncated": the answer cut to its first `keep` share (default
        0.5), with a matching Content-Length. "not_json": HTTP 200 with an HTML page.
        "trickle": the answer, one byte per `interval` seconds (default 0.05). "hang": no
        answer for `seconds` (default None: until the server stops), then the answer.
        "no_logprobs": the answer without log-probabilities. "key_echo": HTTP `status` (default
        500) whose body echoes the Authorization header from its character `at` on (default:
        after a short message); without its "Bearer " when `bare` (as OpenAI's "Incorrect API
        key provided: sk-..."); only the first `chars` characters of the echo when given.
    RETURNS (Action): the action.
    """
    if mode == "ok":
        return {}
    if mode == "500":
        return {"status": 500, "body": '{"error": {"message": "internal server error"}}'}
    if mode == "429":
        retry_after = options.get("retry_after", 0.1)
        return {
            "status": 429,
            "headers": {"Retry-After": str(retry_after)},
            "body": '{"error": {"message": "rate limit reached"}}',
        }
    if mode == "truncated":
        return {"truncate": options.get("keep", 0.5)}
    if mode == "not_json":
        return {"body": "<html><body><h1>502 Bad Gateway</h1></body></html>"}
    if mode == "trickle":
        return {"trickle": options.get("interval", 0.05)}
    if mode == "hang":
        return {"hang": options.get("seconds")}
    if mode == "no_logprobs":
        return {"logprobs": False}
    if mode == "key_echo":
        return {
            "status": options.get("status", 500),
            "echo_auth": (options.get("at"), options.get("chars"), options.get("bare", False)),
        }
    raise ValueError(f"mode must be one of {MODES}, got {mode!r}")


def spam_or_ham(text: str, prompt: str) -> List[Tuple[str, float]]:
    """Exclusive: 'free' texts lean spam. Multi-label yes/no: yes when the category's word is in
    the text ('spam' <- 'free', 'urgent' <- 'urgent')."""
    if "Answer yes or no" in prompt:
        category = prompt.split('category "', 1)[1].split('"', 1)[0]
        word = {"spam": "free", "urgent": "urgent"}.get(category, category)
        if word in text:
            return [("Yes", -0.05), ("yes", -3.5), ("No", -4.0)]
        return [("No", -0.3), ("yes", -1.5), ("Maybe", -4.0)]
    return SPAM_TOP if "free" in text else HAM_TOP


def text_of(prompt: str) -> str:
    """The text a teacher's prompt asks about (after its last "Text: ")."""
    return prompt.rsplit("Text: ", 1)[-1].split("\nAnswer:", 1)[0]


class FakeOpenAIServer:
    """What the fake server answers, and what it was asked.

    script: actions for the next requests, in order (None: the answer); then `per_text` decides:
    text -> an action for every request about that text, or a list used in turn, then the
    answer. `top(text, prompt)` gives the (token, logprob) pairs; `logprobs = False` leaves them
    out of every answer; `samples` (text -> answers cycled through) serves sampling requests;
    `delay(text)` seconds before answering.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.requests: List[Dict[str, Any]] = []
        self.script: List[Optional[Action]] = []
        self.per_text: Dict[str, Union[Action, List[Action]]] = {}
        self.top: Callable[[str, str], List[Tuple[str, float]]] = spam_or_ham
        self.logprobs = True
        self.samples: Dict[str, List[str]] = {}
        self.delay: Optional[Callable[[str], float]] = None
        self.in_flight = 0
        self.max_in_flight = 0
        self.url = ""
        self.errors: List[str] = []
        self.handler_threads: Set[threading.Thread] = set()

    def next_action(self, record: Dict[str, Any]) -> Action:
        with self.lock:
            self.requests.append(record)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            self.handler_threads.add(threading.current_thread())
            if self.script:
                return self.script.pop(0) or {}
            rule = self.per_text.get(record["text"])
            if isinstance(rule, list):
                return rule.pop(0) if rule else {}
            return rule or {}

    def n_requests(self, text: str) -> int:
        with self.lock:
            return sum(1 for r in self.requests if r["text"] == text)

    def answer(self, path: str, payload: Dict[str, Any], logprobs: bool = True) -> Dict[str, Any]:
        if path.endswith("/chat/completions"):
            prompt = "\n".join(m["content"] for m in payload["messages"])
        else:
            prompt = payload["prompt"]
        text = text_of(prompt)
        if self.delay:
            time.sleep(self.delay(text))
        top = sorted(self.top(text, prompt), key=lambda pair: -pair[1])
        if logprobs and self.logprobs and payload.get("logprobs"):
            n = payload["top_logprobs"] if "messages" in payload else payload["logprobs"]
            top = top[:n]
            token, answer = top[0][0], top[0][0]
        else:
            with self.lock:
                cycle = self.samples.get(text, [top[0][0]])
                count = sum(1 for r in self.requests if r.get("text") == text)
            answer = cycle[(count - 1) % len(cycle)]
            top = None
        if path.endswith("/chat/completions"):
            chat_logprobs = None
            if top is not None:
                entries = [{"token": t, "logprob": lp} for t, lp in top]
                chat_logprobs = {
                    "content": [{"token": token, "logprob": top[0][1], "top_logprobs": entries}]
                }
            choice = {
                "index": 0,
                "message": {"role": "assistant", "content": answer},
                "logprobs": chat_logprobs,
                "finish_reason": "length",
            }
        else:
            completion_logprobs = None
            if top is not None:
                completion_logprobs = {
                    "tokens": [token],
                    "token_logprobs": [top[0][1]],
                    "top_logprobs": [dict(top)],
                }
            choice = {
                "index": 0,
                "text": answer,
                "logprobs": completion_logprobs,
                "finish_reason": "length",
            }
        return {"id": "x", "object": "completion", "model": payload["model"], "choices": [choice]}


def make_handler(fake: FakeOpenAIServer):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as real servers do
        disable_nagle_algorithm = True  # else the body, a second small write, waits ~40 ms

        def log_message(self, *args):  # keep pytest's output clean
            pass

        def do_POST(self):
            payload = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
            prompt = payload.get("prompt") or "\n".join(
                m["content"] for m in payload.get("messages", [])
            )
            record = {
                "path": self.path,
                "headers": dict(self.headers),
                "payload": payload,
                "time": time.monotonic(),
                "text": text_of(prompt),
            }
            action = fake.next_action(record)
            try:
                self.respond(action, payload)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True  # the client gave up (a deadline, a cancel)
            except Exception as err:  # a bug in the fake: fail the test, not just the request
                fake.errors.append(repr(err))
                raise
            finally:
                with fake.lock:
                    fake.in_flight -= 1

        def respond(self, action: Action, payload: Dict[str, Any]) -> None:
            if "hang" in action:
                fake.stopping.wait(action["hang"])
                if fake.stopping.is_set():
                    self.close_connection = True
                    return
            status = action.get("status", 200)
            if "echo_auth" in action:
                at, chars, bare = action["echo_auth"]
                echo = self.headers.get("Authorization", "")
                if bare:
                    echo = echo.split(" ", 1)[-1]
                head = '{"error": "invalid request from '
                head += "." * max(0, (at or 0) - len(head))
                data = head + echo[:chars] + '"}'
            elif "body" in action:
                data = action["body"]
            else:
                answer = fake.answer(self.path, payload, action.get("logprobs", True))
                data = json.dumps(answer)
                if "truncate" in action:
                    data = data[: int(len(data) * action["truncate"])]
            raw = data.encode("utf8")
            self.send_response(status)
            for name, value in action.get("headers", {}).items():
                self.send_header(name, value)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            if "trickle" not in action:
                self.wfile.write(raw)
                return
            for i in range(len(raw)):
                self.wfile.write(raw[i : i + 1])
                if fake.stopping.wait(action["trickle"]):
                    self.close_connection = True
                    return

    return Handler


class QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass


@contextlib.contextmanager
def serve(fake: Optional[FakeOpenAIServer] = None) -> Iterator[FakeOpenAIServer]:
    """Run a fake server on 127.0.0.1 (a free port) in a thread; always shut it down, releasing
    requests that hang or trickle. Callers clear PROXY_VARIABLES (upper- and lower-case) first:
    httpx would send requests for 127.0.0.1 through a proxy they name.

    fake (Optional[FakeOpenAIServer]): the server's state (default: a new one).
    YIELDS (FakeOpenAIServer): the state, its `url` set.
    """
    fake = fake if fake is not None else FakeOpenAIServer()
    server = QuietServer(("127.0.0.1", 0), make_handler(fake))
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(
        target=server.serve_forever, args=(0.02,), name="fake-openai-server", daemon=True
    )
    thread.start()
    try:
        yield fake
    finally:
        fake.stopping.set()
        server.shutdown()
        server.server_close()
        thread.join(5)
