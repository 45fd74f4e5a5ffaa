"""Students on teacher-derived word vectors (static, static-cnn and their ensembles with
bag-of-words): each trains on soft labels, beats chance on held-out toy texts, round-trips
through disk, exports to plain spaCy components with identical cats, learns from hidden states
through a shared tok2vec, and `init-config` picks a default student and says why."""

import re
from pathlib import Path

import numpy
import pytest
import spacy
from spacy import util
from typer.testing import CliRunner

from spacy_distill.cli import app
from spacy_distill.errors import DistillError
from spacy_distill.packaging.export import export_pipeline
from spacy_distill.training.corpus import TargetCorpus
from spacy_distill.training.student_config import (
    SUBWORD_ARCHITECTURES,
    VECTOR_ARCHITECTURES,
    choose_architecture,
    make_student_config,
)

from .conftest import train_config_in_process
from .test_word_vectors import make_vectors, polarity_target_file, polarity_texts

STEPS = 40
# The v1 students (StaticEmbeddings.v1); the subword ones are tested in test_subword_students.py.
V1_ARCHITECTURES = [a for a in VECTOR_ARCHITECTURES if a not in SUBWORD_ARCHITECTURES]


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """Train and dev target files of polarity texts, and word vectors from the fake teacher."""
    root = tmp_path_factory.mktemp("students")
    train = polarity_target_file(root / "train.spacy", n=64, seed=0)
    # The vocabulary covers every toy word (as train + dev would); held-out texts are new combinations.
    dev = polarity_target_file(root / "dev.spacy", n=32, seed=1)
    vectors = root / "word_vectors"
    from spacy_distill.vectors import build_word_vectors

    from .test_word_vectors import FeatureTeacher

    build_word_vectors(FeatureTeacher(), [train, dev], vectors, dims=16, show_progress=False)
    return {"root": root, "train": train, "dev": dev, "vectors": vectors}


def train_student(config, train: Path, steps: int = STEPS):
    return train_config_in_process(config, train, steps)[0]


def accuracy(nlp, rows) -> float:
    docs = list(nlp.pipe([text for text, _ in rows]))
    return float(
        numpy.mean(
            [max(doc.cats, key=doc.cats.get) == label for doc, (_, label) in zip(docs, rows)]
        )
    )


def cats(nlp, texts):
    return numpy.asarray([[doc.cats[k] for k in sorted(doc.cats)] for doc in nlp.pipe(texts)])


@pytest.mark.parametrize("arch", V1_ARCHITECTURES)
def test_student_trains_beats_chance_round_trips_and_exports(toy, tmp_path, arch):
    config = make_student_config(
        toy["train"], toy["dev"], arch=arch, vectors=toy["vectors"], max_steps=STEPS
    )
    embed = config["components"]["textcat"]["model"]["tok2vec"]
    embed = embed.get("embed", embed)
    assert embed["@architectures"] == "spacy-distill.StaticEmbeddings.v1"
    assert embed["width"] == 16  # the vectors' 16 dims, under every default (see the test below)
    nlp = train_student(config, toy["train"])
    held_out = polarity_texts(40, seed=7)
    assert accuracy(nlp, held_out) >= 0.8
    texts = [t for t, _ in held_out] + ["", "unknownword entirely", "GOOD"]
    before = cats(nlp, texts)
    nlp.to_disk(tmp_path / "student")
    loaded = spacy.load(tmp_path / "student")
    assert numpy.allclose(cats(loaded, texts), before, atol=1e-6)
    # The table lives in the weights: the vectors folder is not needed any more.
    (toy["vectors"] / "meta.json").rename(toy["vectors"] / "meta.json.away")
    try:
        result = export_pipeline(tmp_path / "student", tmp_path / "exported", check_texts=texts)
        exported = spacy.load(tmp_path / "exported")
    finally:
        (toy["vectors"] / "meta.json.away").rename(toy["vectors"] / "meta.json")
    assert result["converted"] == {"textcat": "textcat"}
    assert exported.get_pipe_meta("textcat").factory == "textcat"
    # The table ships as float16 (half its bytes): the same decisions, probabilities within 1e-2.
    assert result["half_precision_bytes_saved"] > 0
    assert numpy.abs(cats(exported, texts) - before).max() < 1e-2
    assert numpy.array_equal(cats(exported, texts).argmax(axis=1), before.argmax(axis=1))
    result = export_pipeline(
        tmp_path / "student", tmp_path / "exported_full", check_texts=texts, half_precision=False
    )
    assert numpy.array_equal(
        cats(spacy.load(tmp_path / "exported_full"), texts), cats(loaded, texts)
    )


# The default width of each v1 student on vectors wider than the CNN default of 64: the whole
# table for the pooled students, 64 for the ones with a CNN layer (in its embed and encode).
DEFAULT_WIDTHS_OF_160_DIMS = {
    "static": 160,
    "static-ensemble": 160,
    "static-cnn": 64,
    "static-cnn-ensemble": 64,
}


def test_each_student_gets_its_default_width(toy, tmp_path):
    from spacy_distill.vectors import WordVectors

    assert set(DEFAULT_WIDTHS_OF_160_DIMS) == set(V1_ARCHITECTURES)
    words = ["good", "bad", "film"]
    WordVectors(words, numpy.random.default_rng(0).normal(size=(len(words), 160))).to_disk(
        tmp_path / "wide"
    )
    for arch, width in DEFAULT_WIDTHS_OF_160_DIMS.items():
        tok2vec = make_student_config(toy["train"], arch=arch, vectors=tmp_path / "wide")[
            "components"
        ]["textcat"]["model"]["tok2vec"]
        if "cnn" in arch:
            assert tok2vec["embed"]["width"] == tok2vec["encode"]["width"] == width, arch
        else:
            assert tok2vec["width"] == width, arch


def test_the_table_learns_unknown_words_share_a_row_and_empty_batches_work(toy):
    config = make_student_config(
        toy["train"], arch="static", vectors=toy["vectors"], max_steps=STEPS
    )
    nlp = util.load_model_from_config(config, auto_fill=True)
    examples = list(TargetCorpus(toy["train"])(nlp))
    optimizer = nlp.initialize(lambda: examples)
    embed = nlp.get_pipe("textcat").model.get_ref("tok2vec")
    E0 = embed.get_param("E").copy()
    from spacy_distill.vectors import WordVectors

    table = WordVectors.from_disk(toy["vectors"])
    row = table.words.index("good")
    assert any(numpy.allclose(E0[i], table.vectors[row]) for i in range(1, len(E0)))
    assert numpy.array_equal(E0[0], numpy.zeros(E0.shape[1]))
    nlp.update(examples, sgd=optimizer)
    assert not numpy.array_equal(embed.get_param("E"), E0)
    out = embed.predict([nlp.make_doc("zzz qqq Good"), nlp.make_doc("")])
    assert out[1].shape == (0, 16)
    assert numpy.array_equal(out[0][0], out[0][1])  # two unknown words: one row
    assert list(nlp.pipe(["", ""]))[0].cats


def test_static_students_learn_from_hidden_states_through_a_shared_tok2vec(tmp_path, toy):
    from .test_hidden_storage import hidden_target_file

    # The fake hidden teacher labels ham/spam: positive texts stand in for spam.
    rows = [
        (t, "spam" if label == "positive" else "ham") for t, label in polarity_texts(32, seed=3)
    ]
    train = hidden_target_file(tmp_path / "hidden.spacy", rows, level="doc", width=12)
    vectors = make_vectors(tmp_path, train, dims=16)
    for arch in ("static", "static-cnn"):
        config = make_student_config(train, arch=arch, vectors=vectors, hidden="doc", max_steps=5)
        assert config["nlp"]["pipeline"] == ["tok2vec", "textcat", "distill_hidden"]
        nlp = util.load_model_from_config(config, auto_fill=True)
        examples = list(TargetCorpus(train)(nlp))
        optimizer = nlp.initialize(lambda: examples)
        losses = {}
        for _ in range(3):
            nlp.update(examples, sgd=optimizer, losses=losses)
        assert losses["distill_hidden"] > 0
        nlp.to_disk(tmp_path / arch)
        result = export_pipeline(tmp_path / arch, tmp_path / f"{arch}-exported")
        assert result["removed"] == ["distill_hidden"] and result["inlined"] == ["tok2vec"]
        exported = spacy.load(tmp_path / f"{arch}-exported")
        assert exported.pipe_names == ["textcat"]
        texts = [text for text, _ in rows[:8]]
        assert numpy.allclose(cats(exported, texts), cats(nlp, texts), atol=1e-2)  # float16 tables


def test_spacy_train_runs_the_written_config(toy, tmp_path):
    from spacy.cli.train import train

    config = make_student_config(
        toy["train"], toy["dev"], arch="static-ensemble", vectors=toy["vectors"], max_steps=6
    )
    config["training"]["eval_frequency"] = 3
    config.to_disk(tmp_path / "config.cfg")
    train(tmp_path / "config.cfg", tmp_path / "out")
    nlp = spacy.load(tmp_path / "out" / "model-last")
    assert set(nlp("a good film").cats) == {"negative", "positive"}


def test_bad_vector_settings_are_named(toy, tmp_path):
    with pytest.raises(
        DistillError, match="`arch='static'` starts from teacher-derived word vectors"
    ):
        make_student_config(toy["train"], arch="static")
    with pytest.raises(
        DistillError, match="`vectors` and `width` are for the students on word vectors"
    ):
        make_student_config(toy["train"], arch="bow", vectors=toy["vectors"])
    with pytest.raises(DistillError, match="^`width` must be between 1 and the vectors' 16 dims"):
        make_student_config(toy["train"], arch="static", vectors=toy["vectors"], width=32)
    with pytest.raises(DistillError, match="no word vectors there"):
        make_student_config(toy["train"], arch="static", vectors=tmp_path)
    config = make_student_config(toy["train"], arch="static-cnn", vectors=toy["vectors"], width=8)
    assert config["components"]["textcat"]["model"]["tok2vec"]["encode"]["width"] == 8


def _invoke(*args):
    result = CliRunner().invoke(app, [str(a) for a in args])
    output = result.stdout + (result.stderr if result.stderr_bytes is not None else "")
    return result, " ".join(re.sub(r"\x1b\[[0-9;]*m", "", output).split())


def test_init_config_picks_a_default_student_and_says_why(toy, tmp_path):
    arch, why = choose_architecture(toy["train"])
    assert arch == "bow" and "no teacher word vectors" in why and "about 32 docs per label" in why
    arch, why = choose_architecture(toy["train"], toy["vectors"])
    assert arch == "static" and "64 training docs" in why
    result, out = _invoke(
        "init-config", tmp_path / "c.cfg", "--train", toy["train"], "--vectors", toy["vectors"]
    )
    assert result.exit_code == 0, out
    assert "Student: static" in out and "64 training docs" in out
    config = util.load_config(tmp_path / "c.cfg")
    assert config["paths"]["word_vectors"] == str(toy["vectors"])
    assert config["components"]["textcat"]["model"]["tok2vec"]["vectors"] == "${paths.word_vectors}"
    result, out = _invoke(
        "init-config",
        tmp_path / "d.cfg",
        "--train",
        toy["train"],
        "--arch",
        "static-cnn",
        "--vectors",
        toy["vectors"],
        "--width",
        8,
    )
    assert result.exit_code == 0, out
    assert "Student: static-cnn (chosen with --arch)" in out
    # The library names its arguments (`width`, `arch='static'`); the command line says its flags.
    result, out = _invoke(
        "init-config",
        "-",
        "--train",
        toy["train"],
        "--arch",
        "static",
        "--vectors",
        toy["vectors"],
        "--width",
        32,
    )
    assert result.exit_code == 1 and "--width must be between 1 and the vectors' 16 dims" in out
    result, out = _invoke("init-config", "-", "--train", toy["train"], "--arch", "static")
    assert result.exit_code == 1 and "--arch static starts from teacher-derived word vectors" in out
    assert "pass --vectors VECTORS" in out


def test_multilabel_static_student_trains_and_exports(tmp_path):
    from spacy_distill.data.targets import write_targets

    from .conftest import make_target_docs, spam_target_rows

    train = write_targets(
        make_target_docs(spam_target_rows(exclusive=False), ("ham", "spam", "urgent"), False),
        tmp_path / "train.spacy",
    )
    vectors = make_vectors(tmp_path, train, dims=8)
    config = make_student_config(train, arch="static-ensemble", vectors=vectors, max_steps=5)
    assert config["components"]["textcat"]["factory"] == "distill_textcat_multilabel"
    nlp = train_student(config, train, steps=5)
    nlp.to_disk(tmp_path / "student")
    result = export_pipeline(tmp_path / "student", tmp_path / "exported")
    assert result["converted"] == {"textcat": "textcat_multilabel"}
    exported = spacy.load(tmp_path / "exported")
    assert set(exported("free cash today").cats) == {"ham", "spam", "urgent"}


def test_init_config_empty_arch_picks_and_a_student_without_vectors_ignores_them(toy, tmp_path):
    # A project passes `--arch "${vars.student_arch}" --vectors training/vectors` whatever the var says.
    result, out = _invoke(
        "init-config",
        tmp_path / "c.cfg",
        "--train",
        toy["train"],
        "--arch",
        "",
        "--vectors",
        toy["vectors"],
    )
    assert result.exit_code == 0, out
    assert "Student: static (" in out and "chosen with --arch" not in out
    result, out = _invoke(
        "init-config",
        tmp_path / "b.cfg",
        "--train",
        toy["train"],
        "--arch",
        "bow",
        "--vectors",
        toy["vectors"],
    )
    assert result.exit_code == 0, out
    assert "--arch bow does not use word vectors" in out and "is ignored" in out
    config = util.load_config(tmp_path / "b.cfg")
    assert "word_vectors" not in config["paths"]
    assert config["components"]["textcat"]["model"]["@architectures"].startswith("spacy.TextCatBOW")
