"""Hidden-state extraction in the teachers that have hidden states: HF classifiers, probes
(HiddenStateExtractor), prompted causal LMs and spaCy pipelines with spacy-transformers. Tiny
random models built in temp dirs; nothing is downloaded."""

import numpy
import pytest
import spacy
import spacy_transformers  # noqa: F401  (the trf_data of spaCy pipelines with a transformer)
import torch
import transformers
from spacy.training import Example

from spacy_distill.annotation.annotate import annotate
from spacy_distill.errors import DistillError
from spacy_distill.hidden.alignment import align_to_tokens, token_spans
from spacy_distill.hidden.extract import require_hidden_teacher
from spacy_distill.hidden.storage import HiddenRequest
from spacy_distill.teachers import SpacyTeacher
from spacy_distill.teachers.hf_classifier import HFClassifierTeacher
from spacy_distill.teachers.hf_probe import HiddenStateExtractor

from .conftest import SPAM_TEXTS, FakeTeacher, write_jsonl
from .tiny_models import TRF_TEXTCAT_CONFIG

pytestmark = pytest.mark.usefixtures("hf_offline", "one_torch_thread")

TEXTS = [
    "win a free prize now!!",
    "see   you at lunch, don't be late 😀",
    "thanks",
    "are we still meeting tomorrow or should we call it off and meet next week instead",
]


@pytest.fixture(scope="module")
def model_dirs(tiny_bert_dir, tiny_llama_dir, tiny_classifier_dirs):
    return {
        "bert": tiny_bert_dir,
        "llama": tiny_llama_dir,
        "classifier": tiny_classifier_dirs["binary"],
    }


def manual_states(model, tokenizer, text, layer=-1, max_length=64):
    """One text, unpadded: the chosen layer's piece vectors and their offsets."""
    enc = tokenizer(text, truncation=True, max_length=max_length, return_offsets_mapping=True)
    with torch.no_grad():
        out = model(input_ids=torch.tensor([enc["input_ids"]]), output_hidden_states=True)
    return out.hidden_states[layer][0].float().numpy(), enc["offset_mapping"]


def test_classifier_states_match_an_unpadded_forward_pass(model_dirs):
    teacher = HFClassifierTeacher(str(model_dirs["classifier"]), device="cpu", batch_size=3)
    nlp = spacy.blank("en")
    docs = [nlp.make_doc(t) for t in TEXTS]
    states = teacher.hidden_states(TEXTS, docs, level="both", layer=1, pooling="cls")
    settings = teacher.hidden_settings(layer=1, pooling="cls")
    assert settings == {
        "layer": 1,
        "last_k": None,
        "pooling": "cls",
        "width": 32,
        "model": teacher.teacher_id,
    }
    for text, doc, state in zip(TEXTS, docs, states):
        pieces, offsets = manual_states(teacher.model, teacher.tokenizer, text, layer=1)
        numpy.testing.assert_allclose(state.doc, pieces[0], atol=1e-4)
        tokens, mask = align_to_tokens(text, token_spans(doc), offsets, pieces)
        numpy.testing.assert_allclose(state.tokens, tokens, atol=1e-4)
        assert state.token_mask.tolist() == mask.tolist() and state.tokens.shape == (len(doc), 32)
        assert mask.sum() == sum(not t.is_space for t in doc)
    # Defaults: the last layer, mean pooling.
    assert (
        teacher.hidden_settings()["layer"] == -1 and teacher.hidden_settings()["pooling"] == "mean"
    )


def test_probe_extractor_states_agree_with_its_features(model_dirs):
    for kind, pooling in (("bert", "mean"), ("llama", "last")):
        extractor = HiddenStateExtractor(
            str(model_dirs[kind]), layer=1, pooling=pooling, device="cpu", batch_size=2
        )
        states = extractor.hidden_states(TEXTS, level="doc")
        numpy.testing.assert_allclose(
            numpy.stack([s.doc for s in states]), extractor.features(TEXTS), atol=1e-4
        )
        assert extractor.hidden_settings() == {
            "layer": 1,
            "last_k": None,
            "pooling": pooling,
            "width": 32,
            "model": str(model_dirs[kind]),
        }
    # last_k averages the last hidden states; asking for a layer replaces the default last_k.
    extractor = HiddenStateExtractor(str(model_dirs["bert"]), last_k=2, device="cpu")
    both = extractor.hidden_states(TEXTS[:2], level="doc")
    numpy.testing.assert_allclose(
        numpy.stack([s.doc for s in both]), extractor.features(TEXTS[:2]), atol=1e-4
    )
    assert extractor.hidden_settings(layer=0)["last_k"] is None
    with pytest.raises(DistillError, match="out of range"):
        extractor.hidden_settings(layer=7)
    with pytest.raises(DistillError, match="not both"):
        extractor.hidden_settings(layer=1, last_k=2)


def test_causal_lm_token_states_and_truncation(model_dirs):
    extractor = HiddenStateExtractor(
        str(model_dirs["llama"]), pooling="last", device="cpu", max_length=8
    )
    nlp = spacy.blank("en")
    docs = [nlp.make_doc(t) for t in TEXTS]
    states = extractor.hidden_states(TEXTS, docs, level="token")
    long = states[3]
    assert long.truncated and long.n_pieces == 8 and long.doc is None
    assert long.token_mask[:2].all() and not long.token_mask[-5:].any()
    assert not long.tokens[~long.token_mask].any()
    assert not states[2].truncated and states[2].token_mask.all()


def test_prompt_teacher_gives_the_bare_texts_states(model_dirs):
    from spacy_distill.teachers.hf_prompt import HFPromptTeacher

    model = transformers.AutoModelForCausalLM.from_pretrained(model_dirs["llama"]).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(model_dirs["llama"])
    teacher = HFPromptTeacher(model, tokenizer, ["ham", "spam"], model_name="tiny", max_length=256)
    assert teacher.hidden_settings()["pooling"] == "last"
    states = teacher.hidden_states(TEXTS[:2], level="doc")
    pieces, _ = manual_states(model.base_model, tokenizer, TEXTS[1])
    numpy.testing.assert_allclose(states[1].doc, pieces[-1], atol=1e-4)


def trf_teacher(model_dir, all_states: bool) -> SpacyTeacher:
    # Windows of 16 pieces, 12 apart: the longer texts have pieces in two spans.
    config = spacy.util.load_config_from_str(
        TRF_TEXTCAT_CONFIG.format(model_dir=model_dir),
        overrides={
            "components.transformer.model.transformer_config": {"output_hidden_states": all_states},
            "components.transformer.model.get_spans.window": 16,
            "components.transformer.model.get_spans.stride": 12,
        },
    )
    nlp = spacy.util.load_model_from_config(config, auto_fill=True)
    examples = [
        Example.from_dict(
            nlp.make_doc(t),
            {"cats": {"ham": float(label == "ham"), "spam": float(label == "spam")}},
        )
        for t, label in SPAM_TEXTS
    ]
    nlp.initialize(lambda: examples)
    return SpacyTeacher(nlp, batch_size=2)


def test_spacy_transformers_teacher_reads_trf_data(model_dirs):
    teacher = trf_teacher(model_dirs["bert"], all_states=True)
    nlp = spacy.blank("en")
    docs = [nlp.make_doc(t) for t in TEXTS]
    states = teacher.hidden_states(TEXTS, docs, level="both")
    for text, doc, state in zip(TEXTS, docs, states):
        trf = teacher.nlp(text)._.trf_data
        flat = numpy.asarray(trf.model_output.last_hidden_state).reshape(-1, 32)
        lengths, indices = trf.align.lengths, trf.align.dataXd
        start = 0
        for t, length in enumerate(lengths):
            if length:
                numpy.testing.assert_allclose(
                    state.tokens[t], flat[indices[start : start + length]].mean(axis=0), atol=1e-4
                )
            else:
                assert not state.token_mask[t]
            start += length
        numpy.testing.assert_allclose(
            state.doc, state.tokens[state.token_mask].mean(axis=0), atol=1e-5
        )
    # The long text spans several strided windows; its tokens are all covered.
    assert states[3].token_mask.all()
    first = teacher.hidden_states(TEXTS[:1], docs[:1], level="doc", layer=1)[0]
    assert first.doc.shape == (32,) and not numpy.allclose(first.doc, states[0].doc)
    assert teacher.hidden_settings(last_k=2)["last_k"] == 2


def test_spacy_teachers_without_transformer_states_fail_clearly(model_dirs, spacy_teacher_path):
    teacher = trf_teacher(model_dirs["bert"], all_states=False)
    assert teacher.hidden_settings()["width"] == 32
    with pytest.raises(DistillError, match="output_hidden_states"):
        teacher.hidden_settings(layer=1)
    bow = SpacyTeacher(spacy.load(spacy_teacher_path))
    with pytest.raises(DistillError, match="trf_data"):
        bow.hidden_settings()


def test_a_teacher_without_hidden_states_fails_before_any_work(tmp_path):
    teacher = FakeTeacher()
    with pytest.raises(DistillError, match="no hidden states.*hidden_states"):
        require_hidden_teacher(teacher)
    data = write_jsonl(tmp_path / "in.jsonl", [{"text": t} for t, _ in SPAM_TEXTS])
    with pytest.raises(DistillError, match="fake-teacher.*annotate the others without `hidden`"):
        annotate(
            data, tmp_path / "out.spacy", teacher, hidden=HiddenRequest("doc"), show_progress=False
        )
    assert teacher.calls == [] and not (tmp_path / "out.spacy").exists()


def test_hf_teacher_states_annotate_and_train_a_student(model_dirs, tmp_path):
    from spacy_distill.data.targets import get_target, read_targets
    from spacy_distill.pipeline import distill_hidden  # noqa: F401  (registers the factory)
    from spacy_distill.training.corpus import TargetCorpus
    from spacy_distill.training.student_config import make_student_config

    teacher = HFClassifierTeacher(
        str(model_dirs["classifier"]), device="cpu", batch_size=4, max_length=8
    )
    rows = [{"text": t, "label": label} for t, label in SPAM_TEXTS] + [
        {"text": TEXTS[3], "label": "ham"}
    ]
    data = write_jsonl(tmp_path / "train.jsonl", rows)
    request = HiddenRequest("both", dims=6, reduction="pca")
    summary = annotate(
        data, tmp_path / "train.spacy", teacher, hidden=request, show_progress=False, cache=None
    )
    assert summary.n_written == 9 and request.n_truncated == 1
    assert (tmp_path / "train.hidden-projection.npz").exists()
    docs = list(read_targets(tmp_path / "train.spacy"))
    long = get_target(docs[-1]).stored_hidden(n_tokens=len(docs[-1]))
    assert long.width == 6 and long.token_mask[:2].all() and not long.token_mask[-3:].any()
    config = make_student_config(tmp_path / "train.spacy", arch="cnn", hidden="token", max_steps=5)
    nlp = spacy.util.load_model_from_config(config, auto_fill=True, validate=True)
    examples = list(TargetCorpus(tmp_path / "train.spacy")(nlp))
    optimizer = nlp.initialize(lambda: examples)
    losses = [nlp.update(examples, sgd=optimizer)["distill_hidden"] for _ in range(10)]
    assert losses[-1] < losses[0]
