"""Students on `spacy-distill.StaticEmbeddings.v2` (word table + hashed character n-grams) and the
pooled head with a hidden layer (`spacy-distill.TextCatPooled.v1`): the subword fallback is
fitted and deterministic, an unseen word gets a vector of its own, the students train, round-trip
through disk, export to plain spaCy textcats with identical cats, the teacher's vocabulary joins
the word table, and `init-config` picks a subword student by default."""

import numpy
import pytest
import spacy
from spacy import util

from spacy_distill.errors import DistillError
from spacy_distill.ml.logits import forward_logits, has_readable_logits
from spacy_distill.packaging.export import export_pipeline
from spacy_distill.training.corpus import TargetCorpus
from spacy_distill.training.student_config import (
    DEFAULT_VECTOR_ARCH,
    SUBWORD_ARCHITECTURES,
    choose_architecture,
    make_student_config,
)
from spacy_distill.vectors import WordVectors, build_word_vectors
from spacy_distill.vectors.subwords import (
    fit_ngram_vectors,
    ragged_buckets,
    segment_mean,
    word_buckets,
)

from .conftest import train_config_in_process
from .test_students import _invoke, cats
from .test_word_vectors import (
    NEGATIVE,
    POSITIVE,
    FeatureTeacher,
    polarity_target_file,
    polarity_texts,
)

BUCKETS = 256


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    root = tmp_path_factory.mktemp("subword_students")
    train = polarity_target_file(root / "train.spacy", n=64, seed=0)
    dev = polarity_target_file(root / "dev.spacy", n=32, seed=1)
    vectors = root / "word_vectors"
    build_word_vectors(
        FeatureTeacher(),
        [train, dev],
        vectors,
        dims=16,
        show_progress=False,
        subword_buckets=BUCKETS,
    )
    return {"root": root, "train": train, "dev": dev, "vectors": vectors}


def train(config, path, steps):
    return train_config_in_process(config, path, steps)


def test_ngram_buckets_are_deterministic_and_the_fit_reconstructs():
    a = word_buckets("wonderful", 1000)
    assert numpy.array_equal(a, word_buckets("wonderful", 1000)) and len(a) > 5
    assert a.min() >= 0 and a.max() < 1000 and numpy.all(numpy.diff(a) > 0)
    assert len(word_buckets("a", 1000)) == 1  # "<a>": one trigram
    assert len(word_buckets(" \n", 1000)) == 0
    # Shared spellings share buckets: the fallback's whole point.
    assert len(numpy.intersect1d(word_buckets("wonderfull", 1000), a)) >= len(a) - 3
    words = POSITIVE + NEGATIVE
    rng = numpy.random.default_rng(0)
    vectors = rng.normal(size=(len(words), 8)).astype("float32")
    table, stats = fit_ngram_vectors(words, vectors, buckets=4096, l2=1e-4, iterations=100)
    flat, lengths = ragged_buckets(words, 4096, 3, 5)
    assert stats["r2"] > 0.95
    assert numpy.allclose(segment_mean(table, flat, lengths), vectors, atol=0.2)
    with pytest.raises(DistillError, match="min_n <= max_n"):
        fit_ngram_vectors(words, vectors, min_n=4, max_n=3)


def test_subword_vectors_are_saved_and_v1_folders_still_read(toy, tmp_path):
    table = WordVectors.from_disk(toy["vectors"])
    assert table.subwords.shape == (BUCKETS, 16)
    assert table.meta["subwords"]["buckets"] == BUCKETS and 0 < table.meta["subwords"]["r2"] <= 1
    import srsly

    plain = WordVectors(table.words, table.vectors, meta={"teacher": {"id": "x"}})
    plain.to_disk(tmp_path / "v1")
    meta = srsly.read_json(tmp_path / "v1" / "meta.json")
    srsly.write_json(tmp_path / "v1" / "meta.json", {**meta, "version": 1})
    assert WordVectors.from_disk(tmp_path / "v1").subwords is None


@pytest.mark.parametrize("arch", SUBWORD_ARCHITECTURES)
def test_subword_student_covers_unseen_words_trains_round_trips_and_exports(toy, tmp_path, arch):
    config = make_student_config(
        toy["train"], toy["dev"], arch=arch, vectors=toy["vectors"], max_steps=30
    )
    nlp, losses = train(config, toy["train"], steps=30)
    assert losses[-1] < losses[0]
    model = nlp.get_pipe("textcat").model
    assert has_readable_logits(model)
    embed = model.get_ref("tok2vec")
    assert embed.name == "static_subword_embeddings"
    # "wonderfull" and "terribble" are in no vocabulary: their n-grams place them.
    out = embed.predict([nlp.make_doc("wonderfull terribble wonderful"), nlp.make_doc("zzzz qqqq")])
    assert not numpy.allclose(out[0][0], out[0][1])
    unknown_row = embed.get_param("E")[0]
    assert not numpy.allclose(out[0][0], unknown_row)
    assert (
        numpy.dot(out[0][0], out[0][2])
        / (numpy.linalg.norm(out[0][0]) * numpy.linalg.norm(out[0][2]))
        > 0.5
    )
    # The misspellings are scored on the side of the words they resemble.
    assert nlp("wonderfull").cats["positive"] > nlp("terribble").cats["positive"]
    held_out = polarity_texts(40, seed=7)
    texts = [t for t, _ in held_out] + ["", "unknownword entirely", "GOOD", "soooo gooood"]
    before = cats(nlp, texts)
    nlp.to_disk(tmp_path / "student")
    loaded = spacy.load(tmp_path / "student")
    assert numpy.array_equal(cats(loaded, texts), before)
    (toy["vectors"] / "meta.json").rename(toy["vectors"] / "meta.json.away")
    try:  # the tables live in the weights: the vectors folder is not needed any more
        result = export_pipeline(tmp_path / "student", tmp_path / "exported", check_texts=texts)
        exported = spacy.load(tmp_path / "exported")
    finally:
        (toy["vectors"] / "meta.json.away").rename(toy["vectors"] / "meta.json")
    assert result["converted"] == {"textcat": "textcat"}
    assert exported.get_pipe_meta("textcat").factory == "textcat"
    # The tables ship as float16: half their bytes, the same decisions, probabilities within 1e-2.
    tables = [
        node
        for node in exported.get_pipe("textcat").model.walk()
        if node.name == "static_subword_embeddings"
    ][0]
    assert (
        tables.get_param("E").dtype == numpy.float16
        and tables.get_param("N").dtype == numpy.float16
    )
    full = embed.get_param("E").nbytes + embed.get_param("N").nbytes
    assert result["half_precision_bytes_saved"] == full // 2
    assert exported.meta["spacy_distill"]["card"]["tables"]["dtype"] == "float16"
    after = cats(exported, texts)
    assert numpy.abs(after - before).max() < 1e-2 and not numpy.array_equal(after, before)
    assert numpy.array_equal(after.argmax(axis=1), before.argmax(axis=1))
    result = export_pipeline(
        tmp_path / "student", tmp_path / "exported_full", check_texts=texts, half_precision=False
    )
    assert result["half_precision_bytes_saved"] == 0
    assert numpy.array_equal(cats(spacy.load(tmp_path / "exported_full"), texts), before)
    size = lambda folder: sum(f.stat().st_size for f in (tmp_path / folder / "textcat").iterdir())  # noqa: E731
    assert size("exported") < size("exported_full") - full // 2 * 0.9
    # An exported student still trains: its tables turn float32 again on the first update.
    from spacy.training import Example

    optimizer = exported.resume_training()
    doc = exported.make_doc("wonderful film")
    exported.update(
        [Example.from_dict(doc, {"cats": {"positive": 1.0, "negative": 0.0}})], sgd=optimizer
    )
    assert (
        tables.get_param("E").dtype == numpy.float32
        and tables.get_param("N").dtype == numpy.float32
    )


def test_known_words_start_at_their_teacher_vector_and_logits_match_the_head(toy):
    config = make_student_config(
        toy["train"], arch="static-subword-mlp", vectors=toy["vectors"], max_steps=5
    )
    nlp = util.load_model_from_config(config, auto_fill=True)
    examples = list(TargetCorpus(toy["train"])(nlp))
    nlp.initialize(lambda: examples)
    model = nlp.get_pipe("textcat").model
    embed = model.get_ref("tok2vec")
    table = WordVectors.from_disk(toy["vectors"])
    out = embed.predict([nlp.make_doc("good film")])[0]
    for i, word in enumerate(("good", "film")):
        assert numpy.allclose(out[i], table.vectors[table.words.index(word)], atol=1e-5)
    docs = [nlp.make_doc(t) for t in ("a good film", "awful plot")]
    logits, _ = forward_logits(model, docs, is_train=False)
    probs = model.predict(docs)
    e = numpy.exp(logits - logits.max(axis=1, keepdims=True))
    assert numpy.allclose(e / e.sum(axis=1, keepdims=True), probs, atol=1e-5)


def test_subword_student_without_subword_vectors_is_refused(tmp_path, toy):
    build_word_vectors(
        FeatureTeacher(), [toy["train"]], tmp_path / "plain", dims=8, show_progress=False
    )
    with pytest.raises(DistillError, match="holds none"):
        make_student_config(toy["train"], arch="static-subword", vectors=tmp_path / "plain")
    # Without subword vectors the default stays the v1 static student, with a hint.
    arch, why = choose_architecture(toy["train"], tmp_path / "plain")
    assert arch == "static" and "--subwords" in why


def test_init_config_picks_a_subword_student_by_default_with_vectors(toy, tmp_path):
    arch, why = choose_architecture(toy["train"], toy["vectors"])
    assert arch == DEFAULT_VECTOR_ARCH and "64 training docs" in why
    result, out = _invoke(
        "init-config", tmp_path / "c.cfg", "--train", toy["train"], "--vectors", toy["vectors"]
    )
    assert result.exit_code == 0, out
    assert f"Student: {DEFAULT_VECTOR_ARCH}" in out
    config = util.load_config(tmp_path / "c.cfg")
    assert (
        config["components"]["textcat"]["model"]["tok2vec"]["@architectures"]
        == "spacy-distill.StaticEmbeddings.v2"
    )


class VocabTeacher(FeatureTeacher):
    """The feature teacher with a WordPiece-like tokenizer vocabulary."""

    class _Tokenizer:
        all_special_tokens = ["[CLS]", "[SEP]"]

        def get_vocab(self):
            pieces = [
                "[CLS]",
                "[SEP]",
                "[unused0]",
                "##ful",
                "Superb",
                "marvellous",
                "!",
                "good",
                "dreadful",
            ]
            return {p: i for i, p in enumerate(pieces)}

    tokenizer = _Tokenizer()


def test_teacher_vocabulary_joins_the_word_table(toy, tmp_path):
    result = build_word_vectors(
        VocabTeacher(),
        [toy["train"]],
        tmp_path / "tv",
        dims=8,
        show_progress=False,
        teacher_vocab=True,
        subword_buckets=64,
    )
    table = result["vectors"]
    # New whole words only, lowercased; pieces, specials and punctuation are left out.
    assert result["n_teacher_words"] == 2 and table.words[-2:] == ["marvellous", "dreadful"]
    assert "##ful" not in table.words and "!" not in table.words
    assert table.meta["vocabulary_extra"]["n_teacher_words"] == 2
    with pytest.raises(DistillError, match="no Hugging Face tokenizer"):
        build_word_vectors(
            FeatureTeacher(), [toy["train"]], None, dims=8, show_progress=False, teacher_vocab=True
        )


def test_multilabel_subword_student_trains_and_exports(tmp_path):
    from spacy_distill.data.targets import write_targets

    from .conftest import make_target_docs, spam_target_rows

    path = write_targets(
        make_target_docs(spam_target_rows(exclusive=False), ("ham", "spam", "urgent"), False),
        tmp_path / "train.spacy",
    )
    build_word_vectors(
        FeatureTeacher(), [path], tmp_path / "wv", dims=8, show_progress=False, subword_buckets=64
    )
    config = make_student_config(
        path, arch="static-subword-mlp", vectors=tmp_path / "wv", max_steps=5
    )
    nlp, losses = train(config, path, steps=8)
    assert losses[-1] < losses[0]
    nlp.to_disk(tmp_path / "student")
    result = export_pipeline(
        tmp_path / "student", tmp_path / "exported", check_texts=["free cash today", "", "hi"]
    )
    assert result["converted"] == {"textcat": "textcat_multilabel"}
    assert set(spacy.load(tmp_path / "exported")("free cash today").cats) == {
        "ham",
        "spam",
        "urgent",
    }


def test_subword_students_default_to_width_128_of_wider_vectors(tmp_path):
    train = polarity_target_file(tmp_path / "train.spacy", n=64, seed=0)
    words = sorted(set(POSITIVE + NEGATIVE))
    rng = numpy.random.default_rng(0)
    meta = {"subwords": {"buckets": 64, "min_n": 3, "max_n": 5}}
    WordVectors(
        words, rng.normal(size=(len(words), 160)), meta=meta, subwords=rng.normal(size=(64, 160))
    ).to_disk(tmp_path / "wv")
    for arch, width in (("static-subword", 128), ("static-subword-mlp", 128), ("static", 160)):
        config = make_student_config(train, arch=arch, vectors=tmp_path / "wv")
        embed = config["components"]["textcat"]["model"]["tok2vec"]
        assert embed.get("embed", embed)["width"] == width, arch
