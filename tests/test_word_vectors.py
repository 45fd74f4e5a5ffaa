"""Teacher-derived word vectors: vocabulary counting, encoding through a teacher (features or
hidden states), the per-word cache, PCA + frequency weighting, the on-disk folder and the
`word-vectors` command. Fake teachers and tiny random models only."""

import re
import zlib
from pathlib import Path
from typing import List, Sequence

import numpy
import pytest
import spacy
from typer.testing import CliRunner

from spacy_distill.cli import app
from spacy_distill.data.targets import write_targets
from spacy_distill.errors import DistillError
from spacy_distill.registry import registry
from spacy_distill.vectors import TeacherWordEncoder, WordVectors, build_word_vectors, count_words
from spacy_distill.vectors.reduce import frequency_weights, pca_reduce

from .conftest import FakeTeacher, make_target_docs

TEACHER_WIDTH = 24
POSITIVE = ["good", "great", "wonderful", "fine", "lovely", "superb", "nice", "brilliant"]
NEGATIVE = ["bad", "awful", "terrible", "dull", "boring", "poor", "weak", "horrible"]
NEUTRAL = ["the", "film", "was", "a", "plot", "it", "and", "really", "acting", "movie"]


def teacher_word_vector(word: str, width: int = TEACHER_WIDTH) -> numpy.ndarray:
    """What the fake teacher makes of a word: a fixed random vector plus, for polar words, a
    strong push along the first axis (the geometry a student should inherit)."""
    rng = numpy.random.default_rng(zlib.crc32(word.lower().encode("utf8")))
    vector = rng.normal(size=width).astype("float32")
    word = word.lower()
    # Meaning is low-rank and strong, as in real teachers: polarity moves four dimensions.
    vector[:4] += 4.0 if word in POSITIVE else -4.0 if word in NEGATIVE else 0.0
    return vector


class FeatureTeacher(FakeTeacher):
    """A probe-like teacher: `features(texts)` is the mean of its words' vectors; its scores
    follow the polarity axis."""

    def __init__(self, width: int = TEACHER_WIDTH):
        super().__init__(labels=("negative", "positive"))
        self.width = width
        self.teacher_id = "fake-feature-teacher"
        self.feature_calls: List[int] = []

    @property
    def fingerprint(self) -> str:
        return f"fake-feature-teacher-{self.width}"

    def features(self, texts: Sequence[str]) -> numpy.ndarray:
        self.feature_calls.append(len(texts))
        return numpy.stack(
            [
                numpy.mean(
                    [teacher_word_vector(w, self.width) for w in text.split()]
                    or [numpy.zeros(self.width)],
                    axis=0,
                )
                for text in texts
            ]
        ).astype("float32")

    def score(self, texts: Sequence[str]) -> numpy.ndarray:
        polarity = self.features(texts)[:, :4].mean(axis=1, keepdims=True)
        return numpy.log(
            numpy.hstack([1 / (1 + numpy.exp(polarity)), 1 / (1 + numpy.exp(-polarity))])
        ).astype("float32")


@registry.teachers("spacy-distill-test.FeatureTeacher.v1")
def configure_feature_teacher(width: int = TEACHER_WIDTH) -> FeatureTeacher:
    return FeatureTeacher(width)


def polarity_texts(n: int, seed: int) -> List[tuple]:
    """(text, label) pairs: a few neutral words around one or two polar words of one side."""
    rng = numpy.random.default_rng(seed)
    rows = []
    for i in range(n):
        positive = bool(i % 2)
        side = POSITIVE if positive else NEGATIVE
        words = list(rng.choice(NEUTRAL, size=4)) + list(
            rng.choice(side, size=int(rng.integers(1, 3)))
        )
        rng.shuffle(words)
        rows.append((" ".join(words), "positive" if positive else "negative"))
    return rows


def polarity_target_file(path: Path, n: int = 48, seed: int = 0) -> Path:
    """A target file of polarity texts with soft teacher labels and gold."""
    rows = []
    for text, label in polarity_texts(n, seed):
        p = 0.85 if label == "positive" else 0.15
        rows.append(
            (
                text,
                [1 - p, p],
                {"negative": float(label == "negative"), "positive": float(label == "positive")},
            )
        )
    return write_targets(make_target_docs(rows, ("negative", "positive")), path)


def make_vectors(tmp_path: Path, train: Path, dims: int = 16, **kwargs) -> Path:
    output = tmp_path / "word_vectors"
    build_word_vectors(FeatureTeacher(), [train], output, dims=dims, show_progress=False, **kwargs)
    return output


def assert_polarity_separates(vectors: WordVectors) -> None:
    """Every polar word lies on its own side of the midpoint between the two sides' centroids."""
    pos = vectors.vectors[[vectors.words.index(w) for w in POSITIVE if w in vectors.words]]
    neg = vectors.vectors[[vectors.words.index(w) for w in NEGATIVE if w in vectors.words]]
    direction = pos.mean(axis=0) - neg.mean(axis=0)
    middle = (pos.mean(axis=0) + neg.mean(axis=0)) / 2
    assert ((pos - middle) @ direction > 0).all() and ((neg - middle) @ direction < 0).all()


def test_vocabulary_is_lowercased_counted_and_ordered(tmp_path):
    rows = [
        ("The film, the PLOT", None, {"a": 1.0, "b": 0.0}),
        ("the end  ", None, {"a": 0.0, "b": 1.0}),
    ]
    path = write_targets(make_target_docs(rows, ("a", "b")), tmp_path / "t.spacy")
    vocab = count_words([path])
    assert vocab.words[0] == "the" and vocab.counts[0] == 3
    assert vocab.words[1:] == sorted(vocab.words[1:])  # ties: alphabetical
    assert "PLOT" not in vocab.words and "plot" in vocab.words
    assert not any(w.isspace() for w in vocab.words)
    assert count_words([path], attr="orth").words.count("the") == 1
    assert count_words([path], min_count=2).words == ["the"]
    assert len(count_words([path], max_words=2)) == 2
    assert count_words([path]).hash == vocab.hash != count_words([path], max_words=2).hash
    with pytest.raises(DistillError, match="min_count"):
        count_words([path], min_count=0)
    with pytest.raises(DistillError, match="missing.spacy: data file not found"):
        count_words([tmp_path / "missing.spacy"])
    with pytest.raises(DistillError, match="word attribute"):
        count_words([path], attr="lemma")


def test_pca_is_deterministic_ordered_and_keeps_the_main_direction():
    rng = numpy.random.default_rng(0)
    signal = rng.normal(size=(200, 1)) * 10
    matrix = numpy.hstack([signal, rng.normal(size=(200, 7))]).astype("float32")
    matrix[:, 1] *= 1000  # a huge-activation dimension must not own the components
    reduced, info = pca_reduce(matrix, 4)
    again, _ = pca_reduce(matrix.copy(), 4)
    assert numpy.array_equal(reduced, again)
    assert reduced.shape == (200, 4) and reduced.dtype == numpy.float32
    assert numpy.isclose(numpy.sqrt((reduced**2).mean()), 1.0, atol=1e-5)
    prefix, _ = pca_reduce(matrix, 2)
    # A narrower PCA is a prefix of a wider one (up to the RMS scaling).
    assert numpy.allclose(
        prefix / prefix[:, 0].std(), reduced[:, :2] / reduced[:, 0].std(), atol=1e-4
    )
    assert 0 < info["explained_variance"] <= 1
    with pytest.raises(DistillError, match="dims must be between 1 and"):
        pca_reduce(matrix, 9)


def test_frequency_weights_down_weight_frequent_words():
    sif = frequency_weights([100, 10, 1], "sif", 1e-3)
    assert sif[0] < sif[1] < sif[2] <= 1
    zipf = frequency_weights([5, 5, 5], "zipf", 1e-3)
    assert zipf[0] < zipf[1] < zipf[2]
    assert frequency_weights([1, 2], "none") is None
    with pytest.raises(DistillError, match="weighting must be one of"):
        frequency_weights([1], "idf")


def test_vectors_are_deterministic_cached_and_keep_the_teachers_geometry(tmp_path):
    train = polarity_target_file(tmp_path / "train.spacy")
    cache = tmp_path / "cache.sqlite"
    teacher = FeatureTeacher()
    first = build_word_vectors(
        teacher, [train], tmp_path / "a", dims=8, cache=cache, show_progress=False
    )
    n_words = first["n_words"]
    assert first["n_encoded"] == n_words and first["n_cached"] == 0
    assert sum(teacher.feature_calls) == n_words
    teacher.feature_calls.clear()
    second = build_word_vectors(
        teacher, [train], tmp_path / "b", dims=8, cache=cache, show_progress=False
    )
    assert (
        second["n_encoded"] == 0 and second["n_cached"] == n_words and teacher.feature_calls == []
    )
    a, b = WordVectors.from_disk(tmp_path / "a"), WordVectors.from_disk(tmp_path / "b")
    assert a.words == b.words and numpy.array_equal(a.vectors, b.vectors)
    # Without the cache, a fresh teacher gives the very same vectors.
    fresh = build_word_vectors(FeatureTeacher(), [train], None, dims=8, show_progress=False)[
        "vectors"
    ]
    assert numpy.array_equal(fresh.vectors, a.vectors)
    # Another teacher (fingerprint) is another cache entry, not a hit.
    other = build_word_vectors(
        FeatureTeacher(width=20), [train], None, dims=8, cache=cache, show_progress=False
    )
    assert other["n_encoded"] == n_words
    assert a.meta["teacher"]["fingerprint"] == teacher.fingerprint
    assert a.meta["vocabulary"]["hash"] == count_words([train]).hash
    # The polarity axis survives PCA: every polar word is nearer its own side's centroid.
    assert_polarity_separates(a)


def test_a_hidden_state_teacher_gives_vectors_too(tmp_path):
    from .test_hidden_storage import FakeHiddenTeacher, word_vector

    train = polarity_target_file(tmp_path / "train.spacy")
    teacher = FakeHiddenTeacher(width=12)
    encoder = TeacherWordEncoder(teacher)
    assert encoder.method == "hidden_states"
    assert numpy.allclose(encoder.encode(["Good"])[0], word_vector("good", 12))
    result = build_word_vectors(
        teacher, [train], tmp_path / "v", dims=6, weighting="none", show_progress=False
    )
    assert result["vectors"].dims == 6 and teacher.hidden_calls


def test_teachers_without_a_representation_are_refused_by_name(tmp_path, spacy_teacher_path):
    from spacy_distill.teachers import load_teacher

    train = polarity_target_file(tmp_path / "train.spacy")
    with pytest.raises(DistillError, match="fake-teacher .*cannot encode words.*arch='bow'"):
        build_word_vectors(FakeTeacher(), [train], None, show_progress=False)
    # A spaCy pipeline without a spacy-transformers transformer has no hidden states either.
    with pytest.raises(DistillError, match="cannot encode words: .*trf_data.*arch='bow'"):
        build_word_vectors(
            load_teacher(str(spacy_teacher_path)), [train], None, show_progress=False
        )


def test_the_folder_round_trips_and_bad_folders_are_named(tmp_path):
    vectors = WordVectors(["a", "b"], numpy.eye(2, 3), attr="norm", meta={"teacher": {"id": "x"}})
    vectors.to_disk(tmp_path / "v")
    back = WordVectors.from_disk(tmp_path / "v")
    assert back.words == ["a", "b"] and back.attr == "norm" and back.meta["teacher"]["id"] == "x"
    assert numpy.array_equal(back.vectors, vectors.vectors)
    with pytest.raises(DistillError, match="no word vectors there"):
        WordVectors.from_disk(tmp_path)
    import srsly

    meta = srsly.read_json(tmp_path / "v" / "meta.json")
    srsly.write_json(tmp_path / "v" / "meta.json", {**meta, "version": 99})
    with pytest.raises(DistillError, match="field 'version'"):
        WordVectors.from_disk(tmp_path / "v")
    srsly.write_json(tmp_path / "v" / "meta.json", {**meta, "dims": 4})
    with pytest.raises(DistillError, match="shape"):
        WordVectors.from_disk(tmp_path / "v")
    with pytest.raises(DistillError, match="twice"):
        WordVectors(["a", "a"], numpy.zeros((2, 2)))


def _invoke(*args):
    result = CliRunner().invoke(app, [str(a) for a in args])
    output = result.stdout + (result.stderr if result.stderr_bytes is not None else "")
    return result, " ".join(re.sub(r"\x1b\[[0-9;]*m", "", output).split())


def test_word_vectors_cli_writes_reuses_the_cache_and_names_bad_teachers(tmp_path):
    train = polarity_target_file(tmp_path / "train.spacy")
    cfg = tmp_path / "teacher.cfg"
    cfg.write_text('[teacher]\n@teachers = "spacy-distill-test.FeatureTeacher.v1"\nwidth = 24\n')
    cache = tmp_path / "cache.sqlite"
    args = [
        "word-vectors",
        tmp_path / "vectors",
        "--teacher",
        cfg,
        "--data",
        train,
        "--dims",
        8,
        "--cache",
        cache,
        "--no-progress",
    ]
    result, out = _invoke(*args)
    assert result.exit_code == 0, out
    assert "8 dims" in out and "0 from the cache" in out
    result, out = _invoke(*args)
    assert result.exit_code == 0, out
    assert "0 words encoded" in out
    assert WordVectors.from_disk(tmp_path / "vectors").dims == 8
    bad = tmp_path / "bad.cfg"
    bad.write_text('[teacher]\n@teachers = "spacy-distill-test.FakeTeacher.v1"\n')
    result, out = _invoke(
        "word-vectors", tmp_path / "x", "--teacher", bad, "--data", train, "--no-progress"
    )
    assert result.exit_code == 1 and "cannot encode words" in out


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    pytest.importorskip("tokenizers")
    from .tiny_models import build_tiny_bert, build_tiny_llama

    root = tmp_path_factory.mktemp("word_vector_models")
    return {"bert": build_tiny_bert(root / "bert"), "llama": build_tiny_llama(root / "llama")}


def test_a_tiny_llm_extractor_and_a_spacy_transformers_pipeline_give_cached_vectors(
    tmp_path, tiny_models, monkeypatch
):
    import torch

    from spacy_distill.teachers.hf_probe import HiddenStateExtractor

    from .test_hidden_teachers import trf_teacher

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train = polarity_target_file(tmp_path / "train.spacy", n=12)
        cache = tmp_path / "cache.sqlite"
        extractor = HiddenStateExtractor(
            str(tiny_models["llama"]), layer=1, pooling="last", device="cpu", batch_size=4
        )
        encoder = TeacherWordEncoder(extractor)
        assert encoder.method == "features" and encoder.width == 32
        # A word's vector is the extractor's feature of the word alone.
        assert numpy.allclose(encoder.encode(["good"]), extractor.features(["good"]), atol=1e-5)
        first = build_word_vectors(
            extractor, [train], tmp_path / "llama", dims=8, cache=cache, show_progress=False
        )
        again = build_word_vectors(
            extractor, [train], tmp_path / "llama2", dims=8, cache=cache, show_progress=False
        )
        assert first["n_encoded"] == first["n_words"] and again["n_encoded"] == 0
        assert numpy.array_equal(first["vectors"].vectors, again["vectors"].vectors)
        # Another layer is another encoding (a hidden-state request on the same model).
        assert TeacherWordEncoder(extractor, layer=0).fingerprint != encoder.fingerprint
        teacher = trf_teacher(tiny_models["bert"], all_states=False)
        trf = build_word_vectors(
            teacher, [train], tmp_path / "trf", dims=8, cache=cache, show_progress=False
        )
        assert trf["vectors"].meta["encoder"]["method"] == "hidden_states"
        assert trf["vectors"].dims == 8 and numpy.isfinite(trf["vectors"].vectors).all()
    finally:
        torch.set_num_threads(threads)


def token_state_target_file(
    path: Path,
    n: int = 48,
    seed: int = 0,
    width: int = TEACHER_WIDTH,
    *,
    layer: int = -1,
    uncovered: str = "",
) -> Path:
    """Polarity texts whose targets carry token-level states: each token's state is its word's
    teacher vector plus context (the mean of the sentence's words), as a contextual model's
    would be; tokens equal to `uncovered` get no state (mask 0)."""
    from spacy_distill.data.targets import get_target, set_target
    from spacy_distill.hidden.alignment import HiddenStates
    from spacy_distill.hidden.storage import encode_hidden

    rows = []
    for text, label in polarity_texts(n, seed):
        p = 0.85 if label == "positive" else 0.15
        rows.append(
            (
                text,
                [1 - p, p],
                {"negative": float(label == "negative"), "positive": float(label == "positive")},
            )
        )
    docs = make_target_docs(rows, ("negative", "positive"))
    for doc in docs:
        words = numpy.stack([teacher_word_vector(t.text, width) for t in doc])
        states = words + 0.5 * words.mean(axis=0)
        mask = numpy.array([t.lower_ != uncovered for t in doc])
        states[~mask] = 0.0
        target = get_target(doc)
        target.hidden = encode_hidden(
            HiddenStates(tokens=states, token_mask=mask),
            {"layer": layer, "last_k": None, "pooling": "mean", "width": width, "model": "toy"},
        )
        set_target(doc, target, dict(doc.cats))
    return write_targets(docs, path)


def test_vectors_from_stored_token_states_average_each_words_contexts(tmp_path):
    from spacy_distill.vectors import build_word_vectors_from_token_states
    from spacy_distill.vectors.contextual import average_token_states

    train = token_state_target_file(tmp_path / "train.spacy", uncovered="plot")
    vocabulary = count_words([train])
    averaged = average_token_states([train], vocabulary, show_progress=False)
    raw, n_states = averaged["vectors"], averaged["n_states"]
    # Each word's raw vector is the mean of its stored (float16) states, recomputed by hand.
    nlp = spacy.blank("en")
    good = []
    for text, _ in polarity_texts(48, 0):
        words = numpy.stack([teacher_word_vector(t.text) for t in nlp.make_doc(text)])
        good += [
            state
            for t, state in zip(nlp.make_doc(text), words + 0.5 * words.mean(axis=0))
            if t.lower_ == "good"
        ]
    assert good and n_states[vocabulary.words.index("good")] == len(good)
    numpy.testing.assert_allclose(
        raw[vocabulary.words.index("good")], numpy.mean(good, axis=0), atol=2e-2
    )
    # A word with no covered token gets the mean of the others (centred to zero by the PCA).
    plot = vocabulary.words.index("plot")
    assert n_states[plot] == 0 and averaged["n_missing"] == 1
    numpy.testing.assert_allclose(raw[plot], numpy.delete(raw, plot, axis=0).mean(axis=0))
    first = build_word_vectors_from_token_states(
        [train], tmp_path / "a", dims=8, show_progress=False
    )
    again = build_word_vectors_from_token_states(
        [train], tmp_path / "b", dims=8, show_progress=False
    )
    a = WordVectors.from_disk(tmp_path / "a")
    assert numpy.array_equal(
        a.vectors, WordVectors.from_disk(tmp_path / "b").vectors
    )  # deterministic
    assert first["n_encoded"] == 0 and first["n_missing"] == 1 and again["n_docs"] == 48
    assert a.meta["encoder"]["method"] == "token-states" and a.meta["teacher"]["id"] == "toy"
    # The teacher's polarity axis survives averaging and PCA.
    assert_polarity_separates(a)


def test_token_state_vectors_name_files_without_states_or_with_other_settings(tmp_path):
    from spacy_distill.vectors import build_word_vectors_from_token_states

    plain = polarity_target_file(tmp_path / "plain.spacy")
    with pytest.raises(
        DistillError,
        match=r"plain.spacy: doc 0: no token-level hidden states; annotate with `--hidden token`",
    ):
        build_word_vectors_from_token_states([plain], None, show_progress=False)
    last = token_state_target_file(tmp_path / "last.spacy")
    other = token_state_target_file(tmp_path / "other.spacy", layer=-2)
    with pytest.raises(
        DistillError, match=r"other.spacy: doc 0: token states made with other teacher settings"
    ):
        build_word_vectors_from_token_states([last, other], None, show_progress=False)


def test_word_vectors_cli_from_token_states(tmp_path):
    train = token_state_target_file(tmp_path / "train.spacy")
    runner = CliRunner()
    result = runner.invoke(
        app,
        [
            "word-vectors",
            str(tmp_path / "v"),
            "--from-token-states",
            "--data",
            str(train),
            "--dims",
            "8",
            "--no-progress",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "Averaged the token states of 48 docs" in " ".join(result.output.split())
    assert WordVectors.from_disk(tmp_path / "v").dims == 8
    for args in ([], ["--from-token-states", "--teacher", "x.cfg"]):
        bad = runner.invoke(app, ["word-vectors", str(tmp_path / "w"), "--data", str(train), *args])
        assert bad.exit_code == 1 and "either --teacher" in " ".join(bad.output.split())
