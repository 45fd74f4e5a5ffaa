"""The OpenAI-compatible teacher against a fake server on 127.0.0.1 (tests/faults/
fake_openai_server.py): probabilities from top logprobs, both endpoints, multi-label, retries,
timeouts, bad answers, the sampling fallback and the API key's secrecy. The fault-injection
suite (tests/faults/test_openai_faults.py) covers deadlines, cancellation and redaction."""

import json
import math
import pickle
from pathlib import Path
from typing import Any, Dict

import httpx  # noqa: E402,F401  (a required test dependency: the [test] extra)
import numpy
import pytest
from spacy.util import load_config

from spacy_distill.errors import DistillError, LabelMismatchError, TeacherError
from spacy_distill.registry import registry
from spacy_distill.teachers import Teacher
from spacy_distill.teachers.openai_answers import (  # noqa: E402
    answer_matches,
    match_scores,
    token_matches,
)
from spacy_distill.teachers.openai_client import retry_after_seconds  # noqa: E402
from spacy_distill.teachers.openai_server import OpenAITeacher  # noqa: E402

from .faults.fake_openai_server import (  # noqa: E402
    HAM_TOP,
    PROXY_VARIABLES,
    SPAM_TOP,
    FakeOpenAIServer,
    serve,
)

EXAMPLE_CFG = Path(__file__).parent.parent / "examples" / "teachers" / "openai_compatible.cfg"
KEY_ENV = "SPACY_DISTILL_TEST_KEY"
SECRET = "sk-test-0123456789-do-not-leak"


@pytest.fixture
def stub(monkeypatch):
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name.lower(), raising=False)
        monkeypatch.delenv(name, raising=False)
    with serve() as state:
        yield state
    assert not state.errors, state.errors


def make_teacher(stub: FakeOpenAIServer, **kwargs) -> OpenAITeacher:
    settings = dict(
        labels=["ham", "spam"], max_concurrency=1, backoff=0.001, timeout=5.0, max_retries=3
    )
    settings.update(kwargs)
    return OpenAITeacher(stub.url, "stub-model", **settings)


def expected_row(top, verbalizers=(("ham",), ("spam",))) -> numpy.ndarray:
    scores, _ = match_scores(top, verbalizers)
    scores = numpy.asarray(scores)
    return scores - numpy.log(numpy.exp(scores).sum())


TEXTS = ["win a free prize", "see you at lunch", "free cash now", "thanks for the notes"]


def test_token_matching_and_floor():
    assert token_matches(" Pos", "positive") and token_matches("POSITIVE", "positive")
    assert token_matches("\nno", "no")
    assert not token_matches("not", "no") and not token_matches(" ", "no")
    assert answer_matches(" Spam.", "spam") and answer_matches("sp", "spam")
    assert not answer_matches("not sure", "no") and not answer_matches("spammy", "spam")
    top = [("pos", -0.5), ("Positive", -1.5), ("The", -3.0)]
    scores, unmatched = match_scores(top, [("positive",), ("negative",)])
    assert scores[0] == pytest.approx(math.log(math.exp(-0.5) + math.exp(-1.5)))
    assert scores[1] == pytest.approx(-3.0 - math.log(3)) and unmatched == 1


def test_chat_probabilities_sum_to_one(stub):
    teacher = make_teacher(stub)
    assert isinstance(teacher, Teacher) and teacher.exclusive
    assert teacher.teacher_id == f"openai:stub-model@{stub.url[len('http://') :]}"
    scores = teacher.score(TEXTS)
    assert scores.dtype == numpy.float32 and scores.shape == (4, 2)
    assert numpy.allclose(numpy.exp(scores).sum(axis=1), 1.0, atol=1e-6)
    assert list(scores.argmax(axis=1)) == [1, 0, 1, 0]
    assert numpy.allclose(scores[0], expected_row(SPAM_TOP), atol=1e-6)
    assert numpy.allclose(scores[1], expected_row(HAM_TOP), atol=1e-6)
    assert teacher.method == "logprobs"
    request = stub.requests[-1]
    assert request["path"] == "/v1/chat/completions"
    payload = request["payload"]
    assert payload["max_tokens"] == 1 and payload["temperature"] == 0
    assert payload["logprobs"] is True and payload["top_logprobs"] == 20
    assert payload["model"] == "stub-model"
    assert "Authorization" not in request["headers"]


def test_completions_endpoint_and_few_shot(stub):
    teacher = make_teacher(
        stub,
        endpoint="completions",
        top_logprobs=3,
        verbalizers={"spam": ["spam", "junk"]},
        examples=[{"text": "cheap pills", "label": "spam"}],
        instruction="Is this {labels}?",
    )
    teacher_v1 = OpenAITeacher(
        stub.url + "/v1/", "stub-model", labels=["ham", "spam"], endpoint="completions"
    )
    assert teacher_v1.url == teacher.url == stub.url + "/v1/completions"
    assert teacher_v1.base_url == teacher.base_url
    scores = teacher.score(TEXTS[:2])
    request = stub.requests[-1]
    assert request["path"] == "/v1/completions"
    payload = request["payload"]
    assert payload["logprobs"] == 3 and "top_logprobs" not in payload
    assert payload["prompt"] == (
        "Is this ham, spam?\n\nText: cheap pills\nAnswer: spam\n\nText: see you at lunch\nAnswer:"
    )
    assert numpy.allclose(scores[0], expected_row(SPAM_TOP[:3]), atol=1e-6)
    assert numpy.allclose(scores[1], expected_row(HAM_TOP[:3]), atol=1e-6)
    assert numpy.allclose(numpy.exp(scores).sum(axis=1), 1.0, atol=1e-6)


def test_labels_missing_from_top_k_get_a_floor(stub):
    stub.top = lambda text, prompt: [("spam", -0.01), ("The", -5.0), ("A", -6.0)]
    teacher = make_teacher(stub, labels=["ham", "spam", "eggs"])
    scores = teacher.score(["anything"])[0].astype("float64")
    floor = -6.0 - math.log(3)
    raw = numpy.asarray([floor, -0.01, floor])
    assert numpy.allclose(scores, raw - numpy.log(numpy.exp(raw).sum()), atol=1e-6)
    assert 0 < math.exp(scores[0]) < 0.01 and scores[0] == pytest.approx(scores[2])
    stub.top = lambda text, prompt: [("The", -0.5), ("A", -1.0)]
    assert numpy.allclose(numpy.exp(teacher.score(["x"])), 1 / 3, atol=1e-6)
    assert teacher.n_unmatched == 1


def stopped_at_once(endpoint: str) -> Dict[str, Any]:
    """What llama-cpp-python's server (0.3.x) answers when end-of-text is the most likely first
    token: finish_reason "stop", no text, and log-probabilities for no token at all."""
    if endpoint == "chat":
        choice = {
            "index": 0,
            "message": {"content": "", "role": "assistant"},
            "logprobs": {"content": [], "refusal": None},
            "finish_reason": "stop",
        }
    else:
        logprobs = {"text_offset": [], "token_logprobs": [], "tokens": [], "top_logprobs": []}
        choice = {"text": "", "index": 0, "logprobs": logprobs, "finish_reason": "stop"}
    usage = {"prompt_tokens": 40, "completion_tokens": 0, "total_tokens": 40}
    return {"body": json.dumps({"id": "x", "choices": [choice], "usage": usage})}


@pytest.mark.parametrize("endpoint", ["chat", "completions"])
def test_an_answer_that_stops_at_once_names_no_label(stub, endpoint):
    # One such answer used to abort the whole batch ("no logprobs, though the probe request
    # had them"); it is an answer naming no label, and the probe still finds logprobs.
    teacher = make_teacher(stub, endpoint=endpoint, max_concurrency=2)
    stub.script = [stopped_at_once(endpoint)]
    assert teacher.method == "logprobs"
    stub.script = [None, stopped_at_once(endpoint), None]
    scores = teacher.score(TEXTS[:3])
    assert numpy.allclose(numpy.exp(scores).sum(axis=1), 1.0, atol=1e-6)
    stopped = [i for i in range(3) if numpy.allclose(numpy.exp(scores[i]), 0.5, atol=1e-6)]
    assert len(stopped) == 1 and teacher.n_stopped == 1 and teacher.n_unmatched == 1
    others = [i for i in range(3) if i not in stopped]
    for i in others:
        top = SPAM_TOP if "free" in TEXTS[i] else HAM_TOP
        assert numpy.allclose(scores[i], expected_row(top), atol=1e-6)
    multi = make_teacher(stub, endpoint=endpoint, labels=["spam", "urgent"], multi_label=True)
    multi.method
    stub.script = [stopped_at_once(endpoint)]
    logits = multi.score(["urgent"])
    assert multi.n_stopped == 1 and 0.0 in logits[0].tolist()


def test_order_is_kept_under_concurrency(stub):
    def top(text, prompt):
        p = int(text.split()[-1]) / 40 + 0.01 if text.startswith("text ") else 0.5
        return [("spam", math.log(p)), ("ham", math.log(1 - p)), ("x", -20.0)]

    stub.top = top
    # Later texts answer sooner, so answers arrive out of order.
    stub.delay = lambda text: 0.002 * (40 - int(text.split()[-1])) if "text " in text else 0
    texts = [f"text {i}" for i in range(39)]
    teacher = make_teacher(stub, max_concurrency=8)
    scores = teacher.score(texts)
    assert stub.max_in_flight > 1
    expected = numpy.log(numpy.asarray([i / 40 + 0.01 for i in range(39)]))
    assert numpy.allclose(scores[:, 1], expected, atol=1e-5)
    assert numpy.allclose(numpy.exp(scores).sum(axis=1), 1.0, atol=1e-6)


def test_multi_label_yes_no_logits(stub):
    teacher = make_teacher(stub, labels=["spam", "urgent"], multi_label=True, max_concurrency=3)
    assert not teacher.exclusive
    texts = ["free urgent offer", "see you at lunch", "free stuff"]
    teacher.method  # the probe request
    n_before = len(stub.requests)
    scores = teacher.score(texts)
    assert len(stub.requests) - n_before == len(texts) * 2
    yes = math.log(math.exp(-0.05) + math.exp(-3.5))
    positive = yes - (-4.0)
    negative = -1.5 - (-0.3)
    assert numpy.allclose(
        scores, [[positive, positive], [negative, negative], [positive, negative]], atol=1e-5
    )
    questions = {r["payload"]["messages"][0]["content"].split("\n")[0] for r in stub.requests}
    assert 'Does the text belong to the category "urgent"? Answer yes or no.' in questions


def test_429_is_retried_after_retry_after(stub):
    # The waits go through the client's `sleep`, recorded here instead of slept: the test
    # checks what was waited for, not how long a loaded machine took.
    teacher = make_teacher(stub, backoff=30.0)
    sleeps = []
    teacher.client.sleep = sleeps.append
    teacher.method  # the probe request
    slow_down = {"status": 429, "headers": {"Retry-After": "7"}, "body": '{"error": "slow down"}'}
    stub.script = [slow_down, dict(slow_down, headers={"Retry-After": "0.25"})]
    n_before = len(stub.requests)
    scores = teacher.score(["free cash"])
    assert sleeps == [7.0, 0.25] and len(stub.requests) - n_before == 3
    assert numpy.allclose(scores[0], expected_row(SPAM_TOP), atol=1e-6)
    # Without a Retry-After: the backoff, doubling up to 60 s, each wait between half and all
    # of it.
    stub.script = [{"status": 503, "body": "busy"}] * 3
    sleeps.clear()
    teacher.score(["free cash"])
    assert len(sleeps) == 3
    for delay, slept in zip([30.0, 60.0, 60.0], sleeps):
        assert delay / 2 <= slept <= delay


def test_500_twice_then_success_and_exhausted_retries(stub):
    teacher = make_teacher(stub, max_retries=2)
    teacher.method
    stub.script = [{"status": 500, "body": "boom"}, {"status": 502, "body": "boom"}]
    n_before = len(stub.requests)
    scores = teacher.score(["free cash"])
    assert len(stub.requests) - n_before == 3
    assert numpy.allclose(scores[0], expected_row(SPAM_TOP), atol=1e-6)
    stats = teacher.stats()
    assert (stats["method"], stats["n_requests"], stats["n_retries"]) == ("logprobs", 4, 2)
    stub.script = [{"status": 503, "body": "overloaded"}] * 3
    with pytest.raises(DistillError) as err:
        teacher.score(["free cash"])
    assert "503" in str(err.value) and "3 attempts" in str(err.value)
    assert teacher.url in str(err.value)


def test_client_errors_are_not_retried(stub):
    teacher = make_teacher(stub)
    teacher.method
    stub.script = [{"status": 400, "body": '{"error": "top_logprobs too large"}'}]
    n_before = len(stub.requests)
    with pytest.raises(DistillError, match="HTTP 400.*top_logprobs too large"):
        teacher.score(["x"])
    assert len(stub.requests) - n_before == 1


def test_a_request_past_the_timeout_is_retried(stub):
    # The first answer never comes (the server holds it until it stops): only the deadline
    # ends that attempt, and the retry gets the answer.
    teacher = make_teacher(stub, timeout=0.5)
    teacher.method
    stub.script = [{"hang": None}]
    n_before = len(stub.requests)
    scores = teacher.score(["see you"])
    assert len(stub.requests) - n_before == 2 and teacher.stats()["n_retries"] == 1
    assert numpy.allclose(scores[0], expected_row(HAM_TOP), atol=1e-6)


def test_connection_errors_are_retried_then_reported():
    teacher = OpenAITeacher(
        "http://127.0.0.1:9", "m", labels=["a", "b"], max_retries=1, backoff=0.001, timeout=1.0
    )
    with pytest.raises(DistillError, match="2 attempts.*connection error"):
        teacher.score(["x"])


def test_garbage_answers_are_retried_then_give_a_clear_error(stub):
    teacher = make_teacher(stub, max_retries=1)
    teacher.method
    garbage = {"body": "<html>" + "x" * 400}
    stub.script = [None, garbage, None]
    assert numpy.allclose(teacher.score(["a", "b", "c"])[1], expected_row(HAM_TOP), atol=1e-6)
    stub.script = [None, garbage, garbage]
    with pytest.raises(TeacherError) as err:
        teacher.score(["a", "b", "c"])
    message = str(err.value)
    assert err.value.index == 1 and "of the batch" not in message
    assert "2 attempts" in message and "not JSON" in message and teacher.url in message
    assert "<html>" + "x" * 194 in message and "x" * 195 not in message
    stub.script = [{"body": '{"object": "error"}'}] * 2
    with pytest.raises(TeacherError, match="the request failed.*no choices"):
        teacher.score(["a"])
    bad_entry = {"content": [{"top_logprobs": [{"tok": 1}]}]}
    stub.script = [{"body": json.dumps({"choices": [{"logprobs": bad_entry}]})}] * 2
    with pytest.raises(TeacherError, match="malformed logprobs"):
        teacher.score(["a"])


@pytest.mark.parametrize("endpoint", ["chat", "completions"])
def test_no_logprobs_falls_back_to_samples(stub, endpoint):
    stub.logprobs = False
    stub.samples = {"free cash": ["spam", " Spam", "spam.", "ham"], "lunch": ["ham", "eggs"]}
    teacher = make_teacher(stub, endpoint=endpoint, fallback_samples=4, max_concurrency=3)
    reference = make_teacher(stub, endpoint=endpoint)
    assert teacher.method == "samples:4"
    n_before = len(stub.requests)
    scores = teacher.score(["free cash", "lunch"])
    sampled = stub.requests[n_before:]
    assert len(sampled) == 8
    assert all(r["payload"]["temperature"] == 1 and "logprobs" not in r["payload"] for r in sampled)
    # spam 3, ham 1 of 4 -> (1+1, 3+1) / 6; ham 2, 'eggs' matches nothing -> (2+1, 0+1) / 4
    assert numpy.allclose(numpy.exp(scores), [[2 / 6, 4 / 6], [3 / 4, 1 / 4]], atol=1e-6)
    assert teacher.fingerprint != reference.fingerprint
    again = make_teacher(stub, endpoint=endpoint, fallback_samples=4)
    assert again.fingerprint == teacher.fingerprint


def test_no_logprobs_without_fallback_is_an_error(stub):
    stub.logprobs = False
    teacher = make_teacher(stub, fallback_samples=0)
    with pytest.raises(DistillError, match="no logprobs.*fallback_samples"):
        teacher.score(["x"])


def test_multi_label_samples(stub):
    stub.logprobs = False
    stub.samples = {"free": ["Yes", "yes", "no"]}
    teacher = make_teacher(stub, labels=["spam", "urgent"], multi_label=True, fallback_samples=3)
    scores = teacher.score(["free"])
    # every question about "free" cycles through the same answers: yes 2, no 1 per label
    assert numpy.allclose(scores, [[math.log(3 / 2), math.log(3 / 2)]], atol=1e-6)


def test_api_key_is_sent_but_never_shown(stub, monkeypatch):
    monkeypatch.setenv(KEY_ENV, SECRET)
    teacher = make_teacher(stub, api_key_env=KEY_ENV, max_retries=1)
    teacher.score(["free"])
    assert stub.requests[-1]["headers"]["Authorization"] == f"Bearer {SECRET}"
    for shown in (repr(teacher), teacher.fingerprint, teacher.teacher_id, str(vars(teacher))):
        assert SECRET not in shown
    assert SECRET.encode() not in pickle.dumps(teacher)
    assert pickle.loads(pickle.dumps(teacher)).fingerprint == teacher.fingerprint
    stub.script = [{"status": 401, "body": json.dumps({"error": f"Incorrect API key {SECRET}"})}]
    with pytest.raises(DistillError) as err:
        teacher.score(["x"])
    assert SECRET not in str(err.value) and "***" in str(err.value)
    assert "api_key_env" in str(err.value)
    stub.script = [{"status": 500, "body": SECRET}] * 2
    with pytest.raises(DistillError) as err:
        teacher.score(["x"])
    assert SECRET not in str(err.value) and "2 attempts" in str(err.value)
    stub.script = [{"body": "not json " + SECRET}] * 2
    with pytest.raises(DistillError) as err:
        teacher.score(["x"])
    assert SECRET not in str(err.value)
    # The key is read at each request; without it the teacher fails naming the variable only.
    monkeypatch.delenv(KEY_ENV)
    with pytest.raises(DistillError, match=KEY_ENV):
        make_teacher(stub, api_key_env=KEY_ENV)


def test_fingerprint_follows_the_settings(stub):
    base = make_teacher(stub)
    assert make_teacher(stub, max_concurrency=4, timeout=9.0).fingerprint == base.fingerprint
    for changed in (
        dict(instruction="Label it: {labels}"),
        dict(verbalizers={"spam": ["junk"]}),
        dict(examples=[{"text": "t", "label": "ham"}]),
        dict(endpoint="completions"),
        dict(labels=["spam", "ham"]),
    ):
        assert make_teacher(stub, **changed).fingerprint != base.fingerprint, changed
    assert OpenAITeacher(stub.url, "other", labels=["ham", "spam"]).fingerprint != base.fingerprint


def test_bad_settings_are_refused():
    url = "http://127.0.0.1:9"
    with pytest.raises(LabelMismatchError, match="eggs"):
        OpenAITeacher(url, "m", labels=["ham", "spam"], verbalizers={"eggs": ["x"]})
    with pytest.raises(LabelMismatchError, match="'very'"):
        OpenAITeacher(url, "m", labels=["a", "b"], verbalizers={"a": "very good", "b": "very bad"})
    with pytest.raises(LabelMismatchError, match="examples\\[0\\]"):
        OpenAITeacher(url, "m", labels=["a", "b"], examples=[{"text": "t", "label": "c"}])
    with pytest.raises(DistillError, match="endpoint"):
        OpenAITeacher(url, "m", labels=["a", "b"], endpoint="embeddings")
    with pytest.raises(LabelMismatchError, match="two labels"):
        OpenAITeacher(url, "m", labels=["a"])
    # The instruction is a format string, checked as the HF prompt teacher's is.
    with pytest.raises(DistillError, match=r"instruction: unknown field.*'label'"):
        OpenAITeacher(url, "m", labels=["a", "b"], instruction="Is it {label}?")
    with pytest.raises(DistillError, match=r"examples\[0\] needs a 'text' string"):
        OpenAITeacher(url, "m", labels=["a", "b"], examples=[{"text": 3, "label": "a"}])


def test_retry_after_header_forms():
    assert retry_after_seconds("2") == 2.0 and retry_after_seconds("0.25") == 0.25
    assert retry_after_seconds(None) is None and retry_after_seconds("soon") is None
    assert retry_after_seconds("100000") == 120.0
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0


def test_registered_builder_and_example_config(stub):
    config = load_config(
        EXAMPLE_CFG,
        overrides={"teacher.base_url": stub.url, "teacher.max_retries": 0},
        interpolate=True,
    )
    teacher = registry.resolve({"teacher": config["teacher"]})["teacher"]
    assert isinstance(teacher, OpenAITeacher) and isinstance(teacher, Teacher)
    scores = teacher.score(["free cash", "lunch"])
    assert scores.shape == (2, len(teacher.labels))
    assert numpy.allclose(numpy.exp(scores).sum(axis=1), 1.0, atol=1e-6)
    builder = registry.teachers.get("spacy-distill.OpenAITeacher.v1")
    assert builder.__name__ == "configure_openai_teacher"
