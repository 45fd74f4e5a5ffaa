"""HFClassifierTeacher on tiny random BERT sequence classifiers built in a temp dir."""

from pathlib import Path

import numpy
import pytest
import srsly
import torch
import transformers
from spacy.util import load_config_from_str

from spacy_distill.errors import DistillError, LabelMismatchError
from spacy_distill.registry import registry
from spacy_distill.teachers.hf_classifier import HFClassifierTeacher
from spacy_distill.teachers.loading import load_teacher

pytestmark = pytest.mark.usefixtures("hf_offline", "one_torch_thread")

TEXTS = [
    "win a free prize now",
    "see you",
    "are we still meeting tomorrow or should we call it off and meet next week instead",
    "free cash",
    "thanks for the notes, see you at lunch",
    "",
    "claim your free reward today",
]


@pytest.fixture(scope="module")
def model_dirs(tiny_classifier_dirs):
    return tiny_classifier_dirs


def manual_logits(path, texts, max_length=64):
    """Logits from a plain forward pass, one text at a time (no batching, no padding)."""
    tokenizer = transformers.AutoTokenizer.from_pretrained(path)
    model = transformers.AutoModelForSequenceClassification.from_pretrained(path).eval()
    rows = []
    with torch.no_grad():
        for text in texts:
            encoded = tokenizer(text, truncation=True, max_length=max_length, return_tensors="pt")
            rows.append(model(**encoded).logits[0].double().numpy())
    return numpy.asarray(rows)


def test_exclusive_scores_match_manual_forward_for_any_batch_size(model_dirs):
    path = model_dirs["three"]
    expected = manual_logits(path, TEXTS)
    expected = numpy.exp(expected) / numpy.exp(expected).sum(axis=1, keepdims=True)
    for batch_size in (1, 3, 64):
        teacher = HFClassifierTeacher(str(path), batch_size=batch_size, device="cpu")
        assert teacher.labels == ("neg", "neu", "pos") and teacher.exclusive
        scores = teacher.score(TEXTS)
        assert scores.dtype == numpy.float32 and scores.shape == (len(TEXTS), 3)
        probs = numpy.exp(scores.astype("float64"))
        numpy.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-6)
        numpy.testing.assert_allclose(probs, expected, atol=1e-5)
    # The rows come back in the caller's order, whatever the internal length sort did.
    permutation = [4, 0, 6, 2, 5, 1, 3]
    numpy.testing.assert_allclose(
        teacher.score([TEXTS[i] for i in permutation]), scores[permutation], atol=1e-6
    )
    assert teacher.score([]).shape == (0, 3)
    assert not numpy.allclose(probs, 1 / 3, atol=0.05), "outputs too uniform to test anything"


def test_label_map_renames_merges_and_drops(model_dirs):
    path = model_dirs["three"]
    plain = numpy.exp(HFClassifierTeacher(str(path), device="cpu").score(TEXTS).astype("float64"))
    merge = {"neu": "negative", "neg": "negative"}
    merged = HFClassifierTeacher(str(path), label_map=merge, device="cpu")
    assert merged.labels == ("negative", "pos")
    numpy.testing.assert_allclose(
        numpy.exp(merged.score(TEXTS)),
        numpy.stack([plain[:, 0] + plain[:, 1], plain[:, 2]], 1),
        atol=1e-5,
    )
    drop = {"neu": None, "pos": "positive"}
    dropped = HFClassifierTeacher(str(path), label_map=drop, device="cpu")
    assert dropped.labels == ("neg", "positive")
    kept = plain[:, [0, 2]]
    numpy.testing.assert_allclose(
        numpy.exp(dropped.score(TEXTS)), kept / kept.sum(axis=1, keepdims=True), atol=1e-5
    )


def test_multi_label_scores_are_the_logits(model_dirs):
    path = model_dirs["multi"]
    teacher = HFClassifierTeacher(str(path), batch_size=2, device="cpu")
    assert not teacher.exclusive and teacher.labels == ("spam", "urgent", "work")
    scores = teacher.score(TEXTS)
    logits = manual_logits(path, TEXTS)
    numpy.testing.assert_allclose(scores, logits, atol=1e-5)
    sigmoid = 1 / (1 + numpy.exp(-scores.astype("float64")))
    numpy.testing.assert_allclose(sigmoid, torch.sigmoid(torch.tensor(logits)).numpy(), atol=1e-6)
    # The config's problem_type can be overridden either way.
    forced = HFClassifierTeacher(str(model_dirs["binary"]), multi_label=True, device="cpu")
    assert not forced.exclusive
    expected = manual_logits(model_dirs["binary"], TEXTS)
    numpy.testing.assert_allclose(forced.score(TEXTS), expected, atol=1e-5)
    assert HFClassifierTeacher(str(path), multi_label=False, device="cpu").exclusive


def test_truncation_is_counted(model_dirs):
    path = model_dirs["binary"]
    teacher = HFClassifierTeacher(str(path), max_length=6, batch_size=2, device="cpu")
    tokenizer = transformers.AutoTokenizer.from_pretrained(path)
    lengths = [len(tokenizer(text)["input_ids"]) for text in TEXTS]
    n_long = sum(length > 6 for length in lengths)
    assert 0 < n_long < len(TEXTS)
    scores = teacher.score(TEXTS)
    assert teacher.n_scored == len(TEXTS) and teacher.n_truncated == n_long
    expected = torch.log_softmax(torch.tensor(manual_logits(path, TEXTS, max_length=6)), 1)
    numpy.testing.assert_allclose(scores, expected.numpy(), atol=1e-5)
    teacher.score(TEXTS[:2])
    stats = teacher.stats()
    assert stats["n_scored"] == len(TEXTS) + 2 and stats["max_length"] == 6
    assert stats["n_truncated"] == n_long + sum(length > 6 for length in lengths[:2])
    # The default: the tokenizer's limit (unset here), capped by 512 and the model's positions.
    assert HFClassifierTeacher(str(path), device="cpu").max_length == 64


def test_fingerprint_follows_what_changes_outputs(model_dirs):
    path = str(model_dirs["three"])
    base = HFClassifierTeacher(path, device="cpu")
    assert base.fingerprint == HFClassifierTeacher(path, batch_size=2, device="cpu").fingerprint
    assert len(base.fingerprint) == 64
    others = [
        HFClassifierTeacher(path, label_map={"neu": None}, device="cpu"),
        HFClassifierTeacher(path, label_map={"neu": "neg"}, device="cpu"),
        HFClassifierTeacher(path, max_length=8, device="cpu"),
        HFClassifierTeacher(path, multi_label=True, device="cpu"),
        HFClassifierTeacher(str(model_dirs["binary"]), device="cpu"),
    ]
    prints = {base.fingerprint} | {teacher.fingerprint for teacher in others}
    assert len(prints) == len(others) + 1
    assert base.teacher_id == f"hf:{path}"


def test_bad_settings_name_what_is_wrong(model_dirs, tmp_path):
    path = str(model_dirs["three"])
    with pytest.raises(LabelMismatchError, match="'negative'"):
        HFClassifierTeacher(path, label_map={"negative": "neg"}, device="cpu")
    with pytest.raises(LabelMismatchError, match="merg"):
        HFClassifierTeacher(str(model_dirs["multi"]), label_map={"urgent": "spam"}, device="cpu")
    with pytest.raises(DistillError, match="max_length 100 exceeds"):
        HFClassifierTeacher(path, max_length=100, device="cpu")
    with pytest.raises(DistillError, match="dtype"):
        HFClassifierTeacher(path, dtype="float8", device="cpu")
    with pytest.raises(DistillError, match="device"):
        HFClassifierTeacher(path, device="gpu")
    with pytest.raises(DistillError, match="cannot load"):
        HFClassifierTeacher(str(tmp_path / "missing"), device="cpu")


def test_registry_resolution_from_config(model_dirs, tmp_path):
    config_str = f"""
[teacher]
@teachers = "spacy-distill.HFClassifierTeacher.v1"
model = "{model_dirs["three"]}"
label_map = {{"neu": null}}
max_length = 16
device = "cpu"
batch_size = 4
"""
    teacher = registry.resolve(load_config_from_str(config_str))["teacher"]
    assert isinstance(teacher, HFClassifierTeacher)
    assert teacher.labels == ("neg", "pos") and teacher.max_length == 16 and teacher.batch_size == 4
    cfg = tmp_path / "teacher.cfg"
    cfg.write_text(config_str, encoding="utf8")
    loaded = load_teacher(cfg)
    assert loaded.fingerprint == teacher.fingerprint
    numpy.testing.assert_allclose(loaded.score(TEXTS), teacher.score(TEXTS), atol=1e-6)


def test_bad_id2label_is_reported(model_dirs, tmp_path):
    import shutil

    path = tmp_path / "dup"
    shutil.copytree(model_dirs["binary"], path)
    config = srsly.read_json(path / "config.json")
    config["id2label"] = {"0": "spam", "1": "spam"}
    srsly.write_json(path / "config.json", config)
    with pytest.raises(LabelMismatchError, match="spam"):
        HFClassifierTeacher(str(path), device="cpu")


@pytest.mark.parametrize(
    "module",
    [
        "teachers/hf_classifier",
        "teachers/hf_prompt",
        "teachers/hf_probe",
        "teachers/probe_head",
        "teachers/prompt_lm",
        "teachers/ensemble",
        "hf/loading",
        "hf/features",
        "hf/extractor",
    ],
)
def test_module_level_code_imports_neither_torch_nor_transformers(module):
    """Statically (a subprocess importing spaCy costs seconds): only function bodies may import
    them. `import spacy_distill` as a whole is checked in test_registry.py."""
    import ast

    import spacy_distill

    source = (Path(spacy_distill.__file__).parent / f"{module}.py").read_text("utf8")
    heavy = {"torch", "transformers"}
    for node in ast.parse(source).body:
        if isinstance(node, ast.Import):
            assert not {alias.name.split(".")[0] for alias in node.names} & heavy, ast.dump(node)
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            assert (node.module or "").split(".")[0] not in heavy, ast.dump(node)
