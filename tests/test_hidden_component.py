"""`distill_hidden`: the loss and its gradient, the projector, the listener into the shared
tok2vec, training, serialization, export and the errors; and `init-config --hidden`."""

import numpy
import pytest
import spacy
from spacy.training import Example
from thinc.api import Adam, Model

import spacy_distill  # noqa: F401
import spacy_distill.hidden.model  # noqa: F401  (registers the projector and the loss)
import spacy_distill.pipeline.distill_hidden  # noqa: F401  (registers the factory)
from spacy_distill.data.targets import read_targets
from spacy_distill.errors import DistillError
from spacy_distill.hidden.model import HiddenStateLoss, build_hidden_projector
from spacy_distill.hidden.storage import decode_hidden
from spacy_distill.packaging.export import export_pipeline
from spacy_distill.registry import registry
from spacy_distill.training.corpus import TargetCorpus
from spacy_distill.training.student_config import make_student_config

from .conftest import SPAM_TEXTS
from .test_hidden_storage import WIDTH, FakeHiddenTeacher, hidden_target_file, invoke

TEXTS = [t for t, _ in SPAM_TEXTS]


def finite_difference(f, x, eps=1e-6):
    grad = numpy.zeros_like(x)
    for index in numpy.ndindex(*x.shape):
        old = x[index]
        x[index] = old + eps
        up = f(x)
        x[index] = old - eps
        down = f(x)
        x[index] = old
        grad[index] = (up - down) / (2 * eps)
    return grad


@pytest.mark.parametrize("kind", ["mse", "cosine", "both"])
def test_loss_gradient_matches_finite_differences(kind):
    rng = numpy.random.default_rng(0)
    guesses = rng.normal(size=(5, 4))
    target = rng.normal(size=(5, 4))
    mask = numpy.asarray([1.0, 0.0, 1.0, 1.0, 1.0])
    loss = HiddenStateLoss(kind=kind, weight=0.7)
    grad, value = loss(guesses, (target, mask))
    numeric = finite_difference(lambda g: loss.get_loss(g, (target, mask)), guesses.copy())
    numpy.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-7)
    assert not grad[1].any()  # a masked row gets no gradient
    assert value > 0 and loss.get_loss(target, (target, mask)) == pytest.approx(0.0, abs=1e-7)
    # Nothing to compare: zero loss, zero gradient.
    grad, value = loss(guesses, (target, numpy.zeros(5)))
    assert value == 0.0 and not grad.any()


def test_mse_and_cosine_values_and_registry():
    guesses = numpy.asarray([[1.0, 0.0], [0.0, 2.0]])
    target = numpy.asarray([[0.0, 1.0], [0.0, 1.0]])
    mask = numpy.ones(2)
    assert HiddenStateLoss(kind="mse").get_loss(guesses, (target, mask)) == pytest.approx(
        (1.0 + 0.5) / 2
    )
    assert HiddenStateLoss(kind="cosine").get_loss(guesses, (target, mask)) == pytest.approx(
        0.5, abs=1e-6
    )
    both = registry.losses.get("spacy-distill.HiddenStateLoss.v1")(kind="both", weight=2.0)
    assert both.get_loss(guesses, (target, mask)) == pytest.approx(2.0 * (0.75 + 0.5), abs=1e-6)
    with pytest.raises(ValueError, match="kind"):
        HiddenStateLoss(kind="l1")
    assert registry.architectures.get("spacy-distill.HiddenProjector.v1") is build_hidden_projector


def _fixed_tok2vec(arrays):
    def forward(model, docs, is_train):
        return [arrays[i] for i in range(len(docs))], lambda d: d

    return Model("fixed", forward)


def test_projector_and_loss_gradient_matches_finite_differences():
    rng = numpy.random.default_rng(1)
    arrays = [rng.normal(size=(n, 3)).astype("float32") for n in (2, 4, 1)]
    target = rng.normal(size=(3, 5))
    for level in ("doc", "token"):
        model = build_hidden_projector(_fixed_tok2vec(arrays), nO=5, level=level)
        model.initialize(X=[None] * 3)
        projection = model.get_ref("projection")
        loss = HiddenStateLoss(kind="both")
        rows = target if level == "doc" else rng.normal(size=(7, 5))
        mask = numpy.ones(len(rows))

        def value(W):
            projection.set_param("W", W.astype("float32"))
            out = model.predict([None] * 3)
            flat = out if level == "doc" else numpy.concatenate(out)
            return loss.get_loss(flat.astype("float64"), (rows, mask))

        W = projection.get_param("W").astype("float64").copy()
        projection.set_param("W", W.astype("float32"))
        out, backprop = model.begin_update([None] * 3)
        flat = out if level == "doc" else numpy.concatenate(out)
        d_flat, _ = loss(flat, (rows, mask))
        if level == "token":
            d_flat = numpy.split(d_flat, numpy.cumsum([len(a) for a in arrays])[:-1])
        projection.set_grad("W", numpy.zeros_like(W, dtype="float32"))
        backprop(d_flat)
        analytic = projection.get_grad("W")
        numeric = finite_difference(value, W.copy(), eps=1e-3)
        numpy.testing.assert_allclose(analytic, numeric, rtol=2e-2, atol=2e-3)
        projection.set_param("W", W.astype("float32"))


LISTENER_ONLY = """
[nlp]
lang = "en"
pipeline = ["tok2vec", "distill_hidden"]

[components]

[components.tok2vec]
factory = "tok2vec"

[components.tok2vec.model]
@architectures = "spacy.HashEmbedCNN.v2"
pretrained_vectors = null
width = 16
depth = 1
embed_size = 500
window_size = 1
maxout_pieces = 2
subword_features = true

[components.distill_hidden]
factory = "distill_hidden"

[components.distill_hidden.model]
@architectures = "spacy-distill.HiddenProjector.v1"
level = "{level}"

[components.distill_hidden.model.tok2vec]
@architectures = "spacy.Tok2VecListener.v1"
width = 16
upstream = "*"

[components.distill_hidden.loss]
@losses = "spacy-distill.HiddenStateLoss.v1"
weight = {weight}
"""


@pytest.fixture(scope="module")
def hidden_train(tmp_path_factory):
    root = tmp_path_factory.mktemp("hidden_train")
    return hidden_target_file(root / "train.spacy", SPAM_TEXTS, level="both")


def _examples(nlp, path):
    return list(TargetCorpus(path)(nlp))


def _tok2vec_params(nlp):
    model = nlp.get_pipe("tok2vec").model
    return {
        (node.id, name): node.get_param(name).copy()
        for node in model.walk()
        for name in node.param_names
        if node.has_param(name)
    }


@pytest.mark.parametrize("level", ["doc", "token"])
def test_hidden_loss_alone_changes_the_tok2vec_weights_through_the_listener(hidden_train, level):
    changed = {}
    for weight in (0.0, 1.0):
        config = spacy.util.load_config_from_str(LISTENER_ONLY.format(level=level, weight=weight))
        nlp = spacy.util.load_model_from_config(config, auto_fill=True, validate=True)
        examples = _examples(nlp, hidden_train)
        nlp.initialize(lambda: examples)
        assert nlp.get_pipe("distill_hidden").width == WIDTH  # read from the stored states
        before = _tok2vec_params(nlp)
        optimizer = Adam(0.01)
        losses = [nlp.update(examples, sgd=optimizer)["distill_hidden"] for _ in range(20)]
        after = _tok2vec_params(nlp)
        changed[weight] = max(float(numpy.abs(after[k] - before[k]).max()) for k in before)
        if weight:
            assert losses[-1] < 0.5 * losses[0]
    assert changed[0.0] == 0.0 and changed[1.0] > 1e-3


def student_config(train, arch="cnn", level="doc", **kwargs):
    config = make_student_config(train, arch=arch, hidden=level, max_steps=30, **kwargs)
    config["components"]["tok2vec"]["model"]["embed_size"] = 500
    return config


def trained_student(train, level, steps=30):
    nlp = spacy.util.load_model_from_config(
        student_config(train, level=level), auto_fill=True, validate=True
    )
    examples = _examples(nlp, train)
    optimizer = nlp.initialize(lambda: examples)
    history = [nlp.update(examples, sgd=optimizer) for _ in range(steps)]
    return nlp, history


@pytest.mark.parametrize("level", ["doc", "token"])
def test_student_trains_with_soft_labels_and_hidden_states_and_saves_without_the_teacher(
    hidden_train, tmp_path, level
):
    nlp, history = trained_student(hidden_train, level)
    assert nlp.pipe_names == ["tok2vec", "textcat", "distill_hidden"]
    assert history[-1]["distill_hidden"] < history[0]["distill_hidden"]
    assert history[-1]["textcat"] < history[0]["textcat"]
    component = nlp.get_pipe("distill_hidden")
    assert component.is_training_only and component.score([]) == {}
    doc = nlp("free cash now")
    assert component(doc) is doc
    nlp.to_disk(tmp_path / "student")
    loaded = spacy.load(tmp_path / "student")
    assert loaded.pipe_names == nlp.pipe_names
    for text in TEXTS:
        assert loaded(text).cats == pytest.approx(nlp(text).cats, abs=1e-6)
    assert loaded.get_pipe("distill_hidden").width == WIDTH
    scores = loaded.evaluate(_examples(loaded, hidden_train))
    assert "cats_score" in scores

    result = export_pipeline(tmp_path / "student", tmp_path / "exported", check_texts=TEXTS)
    assert result["removed"] == ["distill_hidden"] and result["inlined"] == ["tok2vec"]
    assert result["pipeline"] == ["textcat"]
    exported = spacy.load(tmp_path / "exported")
    assert set(exported.config["components"]) == {"textcat"}
    for text in TEXTS:
        doc = exported(text)
        assert doc.cats == pytest.approx(nlp(text).cats, abs=1e-6)
        assert doc.tensor.size == 0  # no shared tok2vec left to write it


BOW_WITH_HIDDEN = """
[nlp]
lang = "en"
pipeline = ["textcat", "distill_hidden"]

[components]

[components.textcat]
factory = "distill_textcat"

[components.distill_hidden]
factory = "distill_hidden"

[components.distill_hidden.model]
@architectures = "spacy-distill.HiddenProjector.v1"
nO = {nO}

[components.distill_hidden.model.tok2vec]
@architectures = "spacy.Tok2VecListener.v1"
width = 16
upstream = "*"
"""


def test_a_student_without_tok2vec_is_refused_naming_the_component(hidden_train):
    config = spacy.util.load_config_from_str(BOW_WITH_HIDDEN.format(nO="null"))
    nlp = spacy.util.load_model_from_config(config, auto_fill=True, validate=True)
    examples = _examples(nlp, hidden_train)
    with pytest.raises(
        DistillError, match="Component 'distill_hidden': no tok2vec component.*BOW.*--arch cnn"
    ):
        nlp.initialize(lambda: examples)
    with pytest.raises(DistillError, match="`arch='bow'` has none"):
        make_student_config(hidden_train, arch="bow", hidden="doc")


def test_widths_that_disagree_with_the_stored_states_are_named(hidden_train, tmp_path):
    config = student_config(hidden_train)
    config["components"]["distill_hidden"]["model"]["nO"] = 7
    nlp = spacy.util.load_model_from_config(config, auto_fill=True, validate=True)
    examples = _examples(nlp, hidden_train)
    with pytest.raises(
        DistillError,
        match=r"'distill_hidden': the projector maps to nO = 7 .*width 12; set nO = 12",
    ):
        nlp.initialize(lambda: examples)
    # A later file annotated at another width: the doc is named.
    other = hidden_target_file(
        tmp_path / "wide.spacy", SPAM_TEXTS[:2], teacher=FakeHiddenTeacher(width=9)
    )
    nlp = spacy.util.load_model_from_config(
        student_config(hidden_train), auto_fill=True, validate=True
    )
    nlp.initialize(lambda: examples)
    wide = _examples(nlp, other)
    with pytest.raises(
        DistillError,
        match=r"example 1 in batch \('free cash click here'.*wide.jsonl:2\): "
        r"field 'hidden': width 9 differs from the 12 dims",
    ):
        nlp.update(examples[:1] + wide[1:], sgd=None)


def test_docs_without_stored_states_are_named_or_skipped(hidden_train, tmp_path, spam_jsonl):
    from spacy_distill.annotation.annotate import annotate

    plain = tmp_path / "plain.spacy"
    annotate(spam_jsonl, plain, FakeHiddenTeacher(), show_progress=False)
    nlp = spacy.util.load_model_from_config(
        student_config(hidden_train), auto_fill=True, validate=True
    )
    examples = _examples(nlp, hidden_train)
    nlp.initialize(lambda: examples)
    missing = _examples(nlp, plain)
    with pytest.raises(
        DistillError,
        match=r"example 0 in batch \('win a free prize now', from .*spam.jsonl:1\): "
        r"field 'hidden': missing.*--hidden doc.*allow_missing",
    ):
        nlp.update(missing[:2])
    # With no stored states at all, initialize says so.
    nlp = spacy.util.load_model_from_config(
        student_config(hidden_train), auto_fill=True, validate=True
    )
    with pytest.raises(
        DistillError, match="none of the first training examples has stored hidden states"
    ):
        nlp.initialize(lambda: missing)
    # allow_missing = true: those docs only train the classifier.
    config = student_config(hidden_train)
    config["components"]["distill_hidden"]["allow_missing"] = True
    nlp = spacy.util.load_model_from_config(config, auto_fill=True, validate=True)
    nlp.initialize(lambda: examples)
    losses = nlp.update(missing[:2] + examples[:2], sgd=Adam(0.001))
    assert losses["distill_hidden"] > 0 and losses["textcat"] > 0
    assert nlp.update(missing[:2], sgd=Adam(0.001))["distill_hidden"] == 0.0


def test_level_mismatch_is_named(tmp_path):
    token_only = hidden_target_file(tmp_path / "tok.spacy", SPAM_TEXTS, level="token")
    with pytest.raises(DistillError, match="holds no doc-level states"):
        make_student_config(token_only, arch="cnn", hidden="doc")
    config = student_config(token_only, level="token")
    config["components"]["distill_hidden"]["model"]["level"] = "doc"
    nlp = spacy.util.load_model_from_config(config, auto_fill=True, validate=True)
    with pytest.raises(
        DistillError,
        match="holds token-level states only, but component 'distill_hidden' is doc-level",
    ):
        nlp.initialize(lambda: _examples(nlp, token_only))


def test_student_tokens_that_differ_from_the_stored_ones_are_aligned(hidden_train):
    nlp, _ = trained_student(hidden_train, "token", steps=1)
    component = nlp.get_pipe("distill_hidden")
    reference = next(iter(read_targets(hidden_train)))
    assert [t.text for t in reference] == ["win", "a", "free", "prize", "now"]
    # The student's tokenizer merges tokens: each of its tokens gets the mean of those it covers.
    predicted = spacy.tokens.Doc(
        nlp.vocab, words=["win a", "free", "prize now"], spaces=[True, True, False]
    )
    eg = Example(predicted, reference)
    target, mask = component._token_truths([eg], WIDTH)
    tokens = decode_hidden(reference.user_data["spacy_distill"]["hidden"]).tokens
    assert mask.tolist() == [1.0, 1.0, 1.0]
    numpy.testing.assert_allclose(target[0], tokens[:2].mean(axis=0))
    numpy.testing.assert_allclose(target[2], tokens[3:].mean(axis=0))


def test_init_config_cli_adds_hidden_distillation(hidden_train, tmp_path):
    cfg = tmp_path / "student.cfg"
    result, output = invoke(
        "init-config",
        cfg,
        "--train",
        hidden_train,
        "--arch",
        "ensemble",
        "--hidden",
        "token",
        "--hidden-loss",
        "cosine",
        "--hidden-weight",
        0.5,
        "--hidden-projector",
        "maxout",
        "--max-steps",
        20,
    )
    assert result.exit_code == 0, output
    config = spacy.util.load_config(cfg)
    assert config["nlp"]["pipeline"] == ["tok2vec", "textcat", "distill_hidden"]
    assert (
        config["components"]["textcat"]["model"]["tok2vec"]["@architectures"]
        == "spacy.Tok2VecListener.v1"
    )
    hidden = config["components"]["distill_hidden"]
    assert (
        hidden["model"]["nO"] == WIDTH
        and hidden["model"]["level"] == "token"
        and hidden["model"]["kind"] == "maxout"
    )
    assert hidden["loss"] == {
        "@losses": "spacy-distill.HiddenStateLoss.v1",
        "kind": "cosine",
        "weight": 0.5,
    }
    from spacy.cli.train import train

    config["training"]["eval_frequency"] = 10
    config.to_disk(cfg)
    train(cfg, tmp_path / "out")
    student = spacy.load(tmp_path / "out" / "model-last")
    assert "distill_hidden" in student.pipe_names and set(student("free cash").cats) == {
        "ham",
        "spam",
    }
    result, output = invoke("init-config", "-", "--train", hidden_train, "--hidden", "doc")
    assert result.exit_code == 1 and "--arch bow has none" in output
