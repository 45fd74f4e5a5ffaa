"""The OpenAI-compatible teacher against a flaky server (issue 18, items 4-7): a total deadline
per request, the API key redacted before a body is cut, unreadable answers retried and reported
with the text's index, and the first failure cancelling the other requests. Every fault of
fake_openai_server goes through `OpenAITeacher.score`, and no message or log record shows the
key, nor the start of it."""

import logging
import threading
import time

import httpx  # noqa: E402,F401  (a required test dependency: the [test] extra)
import numpy
import pytest

from spacy_distill.errors import TeacherError
from spacy_distill.teachers.openai_client import redact  # noqa: E402
from spacy_distill.teachers.openai_server import OpenAITeacher  # noqa: E402

from .fake_openai_server import (  # noqa: E402
    MODES,
    PROXY_VARIABLES,
    FakeOpenAIServer,
    fault,
    serve,
)

KEY_ENV = "SPACY_DISTILL_FAULTS_KEY"
SECRET = "sk-Zq9-fault-0123456789abcdef-never-shown"
DEADLINE = 0.5
TEXTS = ["free cash now", "see you at lunch", "thanks for the notes"]
TARGET = 1  # the position, in TEXTS, of the text the faults are about


def assert_no_key(text: str) -> None:
    assert SECRET[:5] not in text, text


def logged(caplog) -> str:
    return "\n".join(record.getMessage() for record in caplog.get_records("call"))


@pytest.fixture
def server(monkeypatch, caplog):
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name.lower(), raising=False)
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(KEY_ENV, SECRET)
    caplog.set_level(logging.DEBUG, logger="spacy_distill")
    with serve() as fake:
        yield fake
    assert not fake.errors, fake.errors
    assert_no_key(logged(caplog))


def make_teacher(server: FakeOpenAIServer, **kwargs) -> OpenAITeacher:
    settings = dict(
        labels=["ham", "spam"],
        api_key_env=KEY_ENV,
        max_concurrency=3,
        timeout=DEADLINE,
        max_retries=1,
        backoff=0.01,
    )
    settings.update(kwargs)
    teacher = OpenAITeacher(server.url, "fake-model", **settings)
    teacher.method  # the probe, before any fault
    return teacher


def check_error(err: TeacherError, teacher: OpenAITeacher, index: int) -> str:
    message = str(err)
    assert err.index == index, message
    assert teacher.url in message and "of the batch" not in message
    assert_no_key(message)
    return message


def test_a_trickling_answer_is_cut_at_the_total_deadline(server):
    # httpx's timeout is per socket read: one byte every 20 ms never trips it, and the whole
    # answer (~10 s of trickle) used to be waited for, on every attempt.
    teacher = make_teacher(server)
    expected = teacher.score(TEXTS)
    target = TEXTS[TARGET]
    server.per_text[target] = [fault("trickle", interval=0.02), fault("ok")]
    start = time.monotonic()
    scores = teacher.score(TEXTS)
    # Bounds are loose (a loaded CI machine): without the deadline this takes ~10 s.
    assert time.monotonic() - start < DEADLINE + 1.5
    assert numpy.allclose(scores, expected, atol=1e-6) and server.n_requests(target) == 3
    server.per_text[target] = fault("trickle", interval=0.02)
    start = time.monotonic()
    with pytest.raises(TeacherError) as err:
        teacher.score(TEXTS)
    assert time.monotonic() - start < 2 * DEADLINE + 1.5
    message = check_error(err.value, teacher, TARGET)
    assert "2 attempts" in message and f"total deadline ({DEADLINE:g} s)" in message


def test_the_key_is_redacted_before_the_body_is_cut(server):
    # The key begins 10 characters before the 200-character excerpt ends: cut first, then
    # redacted, the excerpt (and the retry's log line) kept "sk-Zq9-fau".
    teacher = make_teacher(server)
    target = TEXTS[TARGET]
    server.per_text[target] = fault("key_echo", at=190, bare=True)
    with pytest.raises(TeacherError) as err:
        teacher.score(TEXTS)
    message = check_error(err.value, teacher, TARGET)
    assert "HTTP 500" in message and "invalid request from" in message and "...***" in message
    # An echo cut short holds only the start of the key: "Bearer <anything>" goes too.
    server.per_text[target] = fault("key_echo", status=400, chars=len("Bearer ") + 9)
    with pytest.raises(TeacherError) as err:
        teacher.score(TEXTS)
    message = check_error(err.value, teacher, TARGET)
    assert "not retried" in message and "Bearer ***" in message
    assert server.requests[-1]["headers"]["Authorization"] == f"Bearer {SECRET}"


def test_redact_covers_the_forms_a_key_is_echoed_in():
    key = "sk-a/b+c=d"
    assert redact(f"key {key}!", key) == "key ***!"
    assert redact('{"k": "sk-a\\/b+c=d"}', key) == '{"k": "***"}'
    assert redact("?key=sk-a%2Fb%2Bc%3Dd&x=1", key) == "?key=***&x=1"
    assert redact("authorization: bearer eyJhbGc.x_y-z==, next", None) == (
        "authorization: bearer ***, next"
    )
    text = "x" * 195 + key
    assert redact(text, key, 200) == "x" * 195 + "***" and key[:3] not in redact(text, key, 198)


def test_an_unreadable_answer_is_retried_then_names_its_text(server):
    # A truncated or non-JSON 200 answer used to abort the whole run at once, naming "text 1
    # of the batch" (a position in a length-sorted batch) instead of retrying.
    teacher = make_teacher(server, max_retries=2)
    expected = teacher.score(TEXTS)
    target = TEXTS[TARGET]
    server.per_text[target] = [fault("truncated"), fault("not_json")]
    assert numpy.allclose(teacher.score(TEXTS), expected, atol=1e-6)
    assert server.n_requests(target) == 4
    server.per_text[target] = {"body": '{"object": "error", "message": "overloaded"}'}
    with pytest.raises(TeacherError) as err:
        teacher.score(TEXTS)
    message = check_error(err.value, teacher, TARGET)
    assert "3 attempts" in message and "no choices" in message and "overloaded" in message
    multi = make_teacher(server, labels=["spam", "urgent"], multi_label=True)
    server.per_text = {"urgent": fault("truncated")}
    with pytest.raises(TeacherError) as err:
        multi.score(["free", "urgent", "lunch"])
    message = check_error(err.value, multi, 1)
    assert "the request about label '" in message and "not JSON" in message


def test_the_first_failure_cancels_the_other_requests(server):
    # The others used to keep retrying after score raised (and the process waited for them
    # at exit): each hanging request ran max_retries + 1 deadlines, here 4 s. Now they end
    # with their current attempt (the hanging ones at their deadline, the trickling one at
    # once), and the error comes at once.
    texts = ["hangs", "fails", "trickles", "hangs too"]
    server.per_text = {
        "hangs": fault("hang"),
        "fails": {"status": 400, "body": '{"error": "context too long"}'},
        "trickles": fault("trickle", interval=0.02),
        "hangs too": fault("hang"),
    }
    teacher = make_teacher(server, max_concurrency=4, max_retries=7)
    before = set(threading.enumerate())
    start = time.monotonic()
    with pytest.raises(TeacherError) as err:
        teacher.score(texts)
    assert time.monotonic() - start < 2 * DEADLINE
    message = check_error(err.value, teacher, 1)
    assert "HTTP 400 (not retried)" in message and "context too long" in message

    def request_threads():
        return [
            t for t in threading.enumerate() if t not in before and t not in server.handler_threads
        ]

    give_up = start + DEADLINE + 1.5
    while request_threads() and time.monotonic() < give_up:
        time.sleep(0.02)
    assert not request_threads()
    # None retried (one may not even have started when the failure came).
    assert all(server.n_requests(text) <= 1 for text in texts)


DEADLINE_MODES = ("trickle", "hang")
FAILURE_WORDS = {
    "500": ["HTTP 500", "internal server error"],
    "429": ["HTTP 429", "rate limit reached"],
    "truncated": ["not JSON", 'the body begins \'{"id"'],
    "not_json": ["not JSON", "502 Bad Gateway"],
    "trickle": ["total deadline"],
    "hang": ["total deadline"],
    "no_logprobs": ["no logprobs, though the probe request had them"],
    "key_echo": ["HTTP 500", "invalid request from Bearer ***"],
}


@pytest.mark.parametrize("always", [False, True], ids=["once", "always"])
@pytest.mark.parametrize("mode", MODES)
def test_each_fault_through_score(server, mode, always):
    # The short deadline only where it is what fails: elsewhere a loaded machine could miss it
    # on a healthy answer and turn the fault under test into a deadline error.
    teacher = make_teacher(server, timeout=DEADLINE if mode in DEADLINE_MODES else 10 * DEADLINE)
    expected = teacher.score(TEXTS)
    target = TEXTS[TARGET]
    server.per_text[target] = fault(mode) if always else [fault(mode)]
    start = time.monotonic()
    if mode == "ok" or not always:
        assert numpy.allclose(teacher.score(TEXTS), expected, atol=1e-6)
        assert server.n_requests(target) == 2 + (mode != "ok")
    else:
        with pytest.raises(TeacherError) as err:
            teacher.score(TEXTS)
        message = check_error(err.value, teacher, TARGET)
        assert "2 attempts" in message
        for words in FAILURE_WORDS[mode]:
            assert words in message
    # Two attempts, each within its deadline (loose: a loaded CI machine; ~20 s without it).
    assert time.monotonic() - start < 2 * DEADLINE + 1.5
