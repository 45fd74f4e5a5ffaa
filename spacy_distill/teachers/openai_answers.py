"""Reading an OpenAI-compatible server's answers: parsing them (`first_token_logprobs`,
`answer_text`) and turning them into label scores.

How a question's class scores are made from log-probabilities (a question chooses between the
labels, exclusive, or between yes and no about one label, multi-label):

1. A returned first token *matches* a verbalizer when, with its leading whitespace stripped and
   both lower-cased, it is a non-empty start of the verbalizer: " Pos", "pos" and "POSITIVE"
   all match "positive"; "\\n" and "not" do not match "no". A class's score is the log-sum-exp
   of the log-probabilities of every top token that matches one of its verbalizers.
2. A class that no top token matches gets a floor: the smallest log-probability seen minus
   log(k), k the number of top tokens returned (it is less likely than anything listed, and the
   rest of the mass is spread over many tokens), so it keeps a small probability.
3. An answer that ended before its first token (finish_reason "stop", an empty list of
   log-probabilities: llama.cpp's server does this when end-of-text is the most likely first
   token) names no class: every class gets the same score, as when no top token matches.
4. Exclusive: log-softmax over the labels. Multi-label: the label's logit is lp(yes) - lp(no).

From sampled answers (a server without log-probabilities): the class frequencies with add-one
smoothing, p(class) = (count + 1) / (k_matched + n_classes); an answer matches as a token does,
or when it begins with a whole verbalizer ("Spam." counts for "spam"); one that matches no class
counts for none, one that matches several is split among them. Multi-label: the logit is
log((yes + 1) / (no + 1)).
"""

import logging
import math
from typing import Any, Callable, List, Optional, Sequence, Tuple

import numpy

from ..probabilities import log_softmax, logsumexp

logger = logging.getLogger(__name__)

TopTokens = List[Tuple[str, float]]
# A job: (text index, label index asked about or None when exclusive, sample number).
Job = Tuple[int, Optional[int], int]


class UnreadableAnswer(Exception):
    """A 200 answer that is not what an OpenAI-compatible server sends (retried like a 5xx)."""


class NoLogprobs(Exception):
    """The server answered well-formed JSON, but without log-probabilities."""


class StoppedAtOnce(Exception):
    """The answer ended before its first token: log-probabilities were sent, for no token."""


def first_token_logprobs(data: Any) -> List[Tuple[str, float]]:
    """The first answer token's top (token, logprob) pairs, from either endpoint's answer.

    data (Any): the parsed JSON answer.
    RETURNS (List[Tuple[str, float]]): the pairs, at least one, none -inf.
    RAISES: NoLogprobs (none sent), StoppedAtOnce (sent for no token), UnreadableAnswer.
    """
    try:
        choice = data["choices"][0]
    except (KeyError, IndexError, TypeError):
        raise UnreadableAnswer("no choices[0]") from None
    if not isinstance(choice, dict):
        raise UnreadableAnswer("choices[0] is not an object")
    logprobs = choice.get("logprobs")
    if not logprobs:
        raise NoLogprobs()
    if choice.get("finish_reason") == "stop" and isinstance(logprobs, dict):
        generated = logprobs.get("content", logprobs.get("top_logprobs"))
        if isinstance(generated, list) and not generated:
            raise StoppedAtOnce()
    try:
        if "content" in logprobs:  # chat
            content = logprobs["content"]
            if not content:
                raise NoLogprobs()
            entries = content[0].get("top_logprobs") or []
            top = [(e["token"], float(e["logprob"])) for e in entries]
        else:  # completions: one {token: logprob} dict per position
            positions = logprobs.get("top_logprobs") or []
            if not positions or not positions[0]:
                raise NoLogprobs()
            first = positions[0]
            if isinstance(first, dict):
                top = [(token, float(lp)) for token, lp in first.items()]
            else:  # some servers send [{"token", "logprob"}, ...]
                top = [(e["token"], float(e["logprob"])) for e in first]
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as err:
        raise UnreadableAnswer(f"malformed logprobs ({type(err).__name__}: {err})") from None
    # A lone sampled token is no distribution: treat it as "no logprobs".
    if not top:
        raise NoLogprobs()
    if not all(math.isfinite(lp) or lp == -math.inf for _, lp in top):
        raise UnreadableAnswer("a logprob is NaN or +inf")
    top = [(token, lp) for token, lp in top if lp > -math.inf]
    if not top:
        raise UnreadableAnswer("every logprob is -inf")
    return top


def has_logprobs(data: Any) -> bool:
    """Whether an answer holds log-probabilities (an empty list, for an answer that stopped at
    once, counts: the server has them)."""
    try:
        first_token_logprobs(data)
    except StoppedAtOnce:
        pass
    except NoLogprobs:
        return False
    return True


def read_logprobs(data: Any) -> Optional[TopTokens]:
    """A scoring answer's top first tokens; None when it stopped at once (it names no label).

    RAISES (UnreadableAnswer): it has no log-probabilities (from a server that had them).
    """
    try:
        return first_token_logprobs(data)
    except StoppedAtOnce:
        return None
    except NoLogprobs:
        raise UnreadableAnswer("no logprobs, though the probe request had them") from None


def answer_text(data: Any, endpoint: str) -> str:
    """The answer's text ("" when it has none).

    data (Any): the parsed JSON answer.
    endpoint (str): "chat" or "completions".
    RAISES (UnreadableAnswer): there is no answer text.
    """
    try:
        choice = data["choices"][0]
        text = choice["message"].get("content") if endpoint == "chat" else choice["text"]
    except (KeyError, IndexError, TypeError, AttributeError):
        raise UnreadableAnswer("no answer text in choices[0]") from None
    if text is not None and not isinstance(text, str):
        raise UnreadableAnswer("the answer text is not a string")
    return text or ""


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
    rest = answer[len(verbalizer) :]
    return answer.startswith(verbalizer) and not (rest[:1].isalnum() or rest[:1] == "_")


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
            scores.append(float(logsumexp(numpy.asarray(hits))))
        else:
            scores.append(floor)
            unmatched += 1
    return scores, unmatched


class AnswerTally:
    """Label scores for a batch of texts, from the answers to their questions.

    n_texts (int): the texts.
    classes (Sequence[Sequence[Sequence[str]]]): the verbalizers of each class a question
        chooses between (the labels', or yes/no).
    n_labels (int): the labels (the score columns).
    exclusive (bool): one question per text (else one per label, classes yes and no).
    """

    def __init__(
        self, n_texts: int, classes: Sequence[Sequence[str]], n_labels: int, exclusive: bool
    ) -> None:
        self.n_texts = n_texts
        self.classes = classes
        self.n_labels = n_labels
        self.exclusive = exclusive
        self.n_unmatched = 0
        """Answers that matched no class (their classes all got the floor)."""
        self.n_stopped = 0
        """Answers that ended before their first token (also counted in n_unmatched)."""

    def from_logprobs(
        self,
        jobs: Sequence[Job],
        tops: Sequence[Optional[TopTokens]],
        show: Callable[[str], str] = str,
    ) -> numpy.ndarray:
        """Scores from each job's first-token log-probabilities (None: it stopped at once).

        show (Callable[[str], str]): makes server text safe to log (e.g. `OpenAIClient.redact`).
        RETURNS (numpy.ndarray): (n_texts, n_labels), float32.
        """
        scores = numpy.zeros((self.n_texts, self.n_labels), dtype="float64")
        for (i, question, _), top in zip(jobs, tops):
            if top is None:  # stopped before its first token: no class is more likely
                self.n_stopped += 1
                class_scores, unmatched = [0.0] * len(self.classes), len(self.classes)
            else:
                class_scores, unmatched = match_scores(top, self.classes)
            if unmatched == len(class_scores):
                self.n_unmatched += 1
                logger.debug(
                    "text %d: no top token matches a label: %s", i, show(repr((top or [])[:5]))
                )
            if question is None:
                scores[i] = class_scores
            else:
                scores[i, question] = class_scores[0] - class_scores[1]
        if self.exclusive:
            scores = log_softmax(scores)
        return scores.astype("float32")

    def from_samples(self, jobs: Sequence[Job], answers: Sequence[str]) -> numpy.ndarray:
        """Scores from sampled answers, several jobs (samples) per question.

        RETURNS (numpy.ndarray): (n_texts, n_labels), float32.
        """
        n_questions = 1 if self.exclusive else self.n_labels
        counts = numpy.zeros((self.n_texts, n_questions, len(self.classes)))
        for (i, question, _), answer in zip(jobs, answers):
            hits = [
                c
                for c, forms in enumerate(self.classes)
                if any(answer_matches(answer, v) for v in forms)
            ]
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
