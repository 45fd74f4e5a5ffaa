"""HFClassifierTeacher on tiny random BERT sequence classifiers built in a temp dir."""
from pathlib import Path

import numpy
import pytest
import srsly
from spacy.util import load_config_from_str

from spacy_distill.errors import DistillError, LabelMismatchError
from spacy_distill.registry import registry
from spacy_distill.teachers.hf_classifier import HFClassifierTeacher
from spacy_distill.teachers.loading import load_teacher

from .conftest import SPAM_TEXTS

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

TEXTS = [
    "win a free prize now",
    "see you",
    "are we still meeting tomorrow or should we call it off and meet next week instead",
    "free cash",
    "thanks for the notes, see you at lunch",
    "",
    "claim your free reward today",
]


def build_tokenizer():
    """A WordPiece tokenizer trained on the toy texts, with BERT's [CLS] ... [SEP] template."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers

    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    trainer = trainers.WordPieceTrainer(vocab_size=200, special_tokens=special, show_progress=False)
    tokenizer.train_from_iterator([t for t, _ in SPAM_TEXTS] * 3, trainer=trainer)
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[(name, tokenizer.token_to_id(name)) for name in ("[CLS]", "[SEP]")],
    )
    return transformers.BertTokenizerFast(
        tokenizer_object=tokenizer, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
        sep_token="[SEP]", mask_token="[MASK]",
    )


def build_tiny_classifier(path, tokenizer, id2label, problem_type=None, seed=0):
    """A 2-layer, 32-wide random BERT sequence classifier, saved with its tokenizer."""
    tokenizer.save_pretrained(path)
    config = transformers.BertConfig(
        vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=64, num_labels=len(id2label),
        id2label=dict(enumerate(id2label)), label2id={label: i for i, label in enumerate(id2label)},
        problem_type=problem_type,
    )
    torch.manual_seed(seed)
    model = transformers.BertForSequenceClassification(config)
    # Random heads give near-uniform outputs; larger weights make the checks meaningful.
    with torch.no_grad():
        model.classifier.weight.mul_(20.0)
    model.save_pretrained(path)
    return path


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    # Tiny models on a shared CPU: torch's thread pool only adds contention (100x slower).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HUB_OFFLINE", "1")
        root = tmp_path_factory.mktemp("hf_classifier")
        tokenizer = build_tokenizer()
        return {
            "binary": build_tiny_classifier(root / "binary", tokenizer, ["ham", "spam"]),
            "three": build_tiny_classifier(
                root / "three", tokenizer, ["neg", "neu", "pos"], seed=1
            ),
            "multi": build_tiny_classifier(
                root / "multi", tokenizer, ["spam", "urgent", "work"],
                "multi_label_classification", seed=2,
            ),
        }


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
model = "{model_dirs['three']}"
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


@pytest.mark.parametrize("module", ["hf_classifier", "ensemble", "hf_common"])
def test_module_level_code_imports_neither_torch_nor_transformers(module):
    """Statically (a subprocess importing spaCy costs seconds): only function bodies may import
    them. `import spacy_distill` as a whole is checked in test_registry.py."""
    import ast

    import spacy_distill.teachers

    source = (Path(spacy_distill.teachers.__file__).parent / f"{module}.py").read_text("utf8")
    heavy = {"torch", "transformers"}
    for node in ast.parse(source).body:
        if isinstance(node, ast.Import):
            assert not {alias.name.split(".")[0] for alias in node.names} & heavy, ast.dump(node)
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            assert (node.module or "").split(".")[0] not in heavy, ast.dump(node)
