"""Hidden states in target files: float16 storage and validation, fixed projections (random and
PCA) with fingerprints, and `annotate --hidden` through the CLI. Also defines the fake teacher
with hidden states that the other hidden-state tests use."""

import re
import zlib
from typing import List, Sequence

import numpy
import pytest
import spacy
from spacy.tokens import DocBin

from spacy_distill.data.targets import (
    TeacherTarget,
    get_target,
    read_targets,
    set_target,
    write_targets,
)
from spacy_distill.errors import DistillError, TargetFormatError
from spacy_distill.hidden.alignment import HiddenStates
from spacy_distill.hidden.storage import (
    HiddenProjection,
    HiddenRequest,
    decode_hidden,
    encode_hidden,
    hidden_nbytes,
)
from spacy_distill.registry import registry

from .conftest import FakeTeacher, write_jsonl
from .conftest import invoke_cli as invoke

WIDTH = 12
SOURCE = {"layer": -1, "last_k": None, "pooling": "mean", "width": WIDTH, "model": "fake-hidden"}


def word_vector(word: str, width: int = WIDTH) -> numpy.ndarray:
    """A fixed random vector per lowercased word: what the fake teacher 'knows' about it."""
    rng = numpy.random.default_rng(zlib.crc32(word.lower().encode("utf8")))
    return rng.normal(size=width).astype("float32")


class FakeHiddenTeacher(FakeTeacher):
    """The fake teacher plus hidden states: a token's vector is its word's fixed vector, a doc's
    the mean of its tokens' (whitespace tokens have none)."""

    def __init__(self, width: int = WIDTH):
        super().__init__()
        self.width = width
        self.teacher_id = "fake-hidden-teacher"
        self.hidden_calls: List[int] = []

    def hidden_settings(self, *, layer=None, last_k=None, pooling=None):
        return {**SOURCE, "width": self.width, "pooling": pooling or "mean"}

    def hidden_states(
        self, texts: Sequence[str], docs=None, *, level="doc", layer=None, last_k=None, pooling=None
    ):
        self.hidden_calls.append(len(texts))
        nlp = spacy.blank("en")
        docs = docs if docs is not None else [nlp.make_doc(t) for t in texts]
        result = []
        for doc in docs:
            tokens = (
                numpy.stack([word_vector(t.text, self.width) for t in doc])
                if len(doc)
                else numpy.zeros((0, self.width), "float32")
            )
            mask = numpy.asarray([not t.is_space for t in doc], dtype=bool)
            tokens[~mask] = 0.0
            pooled = tokens[mask].mean(axis=0) if mask.any() else numpy.zeros(self.width, "float32")
            result.append(
                HiddenStates(
                    doc=pooled if level in ("doc", "both") else None,
                    tokens=tokens if level in ("token", "both") else None,
                    token_mask=mask if level in ("token", "both") else None,
                    n_pieces=len(doc),
                )
            )
        return result


@registry.teachers("spacy-distill-test.FakeHiddenTeacher.v1")
def configure_fake_hidden_teacher(width: int = WIDTH) -> FakeHiddenTeacher:
    return FakeHiddenTeacher(width)


def hidden_target_file(path, texts_labels, level="both", width=WIDTH, teacher=None, dims=None):
    """Annotate (texts, label) pairs with the fake hidden teacher into a target file."""
    from spacy_distill.annotation.annotate import annotate

    data = write_jsonl(
        path.with_suffix(".jsonl"), [{"text": t, "label": label} for t, label in texts_labels]
    )
    teacher = teacher or FakeHiddenTeacher(width)
    annotate(data, path, teacher, hidden=HiddenRequest(level, dims=dims), show_progress=False)
    return path


def _states(n_tokens=4, width=WIDTH, seed=0):
    rng = numpy.random.default_rng(seed)
    mask = numpy.ones(n_tokens, dtype=bool)
    mask[1] = False
    tokens = rng.normal(size=(n_tokens, width)).astype("float32")
    tokens[~mask] = 0.0
    return HiddenStates(
        doc=rng.normal(size=width).astype("float32"), tokens=tokens, token_mask=mask, n_pieces=5
    )


def test_float16_round_trip_through_a_target_file(tmp_path):
    nlp = spacy.blank("en")
    doc = nlp.make_doc("free  cash now")
    assert len(doc) == 4
    states = _states()
    hidden = encode_hidden(states, SOURCE)
    assert hidden["level"] == "both" and hidden["width"] == WIDTH and hidden["projection"] is None
    assert hidden_nbytes(hidden) == WIDTH * 2 + 4 * WIDTH * 2 + 4
    set_target(doc, TeacherTarget(labels=("ham", "spam"), exclusive=True, hidden=hidden))
    plain = set_target(
        nlp.make_doc("no states"), TeacherTarget(labels=("ham", "spam"), exclusive=True)
    )
    write_targets([doc, plain], tmp_path / "t.spacy")
    first, second = list(read_targets(tmp_path / "t.spacy"))
    stored = get_target(first).stored_hidden(n_tokens=len(first))
    numpy.testing.assert_allclose(stored.doc, states.doc, rtol=1e-3, atol=1e-3)
    numpy.testing.assert_allclose(stored.tokens, states.tokens, rtol=1e-3, atol=1e-3)
    assert stored.token_mask.tolist() == [True, False, True, True]
    assert stored.source == SOURCE and stored.width == WIDTH
    # Version-1 readers: `hidden` null stays valid.
    assert get_target(second).hidden is None and get_target(second).stored_hidden() is None


@pytest.mark.parametrize(
    "change,message",
    [
        (lambda h: h.update(version=9), "unsupported hidden-state version 9"),
        (lambda h: h.update(doc=h["doc"][:-2]), "'doc' has 22 bytes, expected 24"),
        (lambda h: h.update(n_tokens=3), "holds 3 token vectors but the doc has 4 tokens"),
        (lambda h: h.update(token_mask=b"\x01"), "'token_mask' must be 4 bytes"),
        (lambda h: h.update(dtype="float32"), "dtype must be 'float16'"),
        (lambda h: h.update(doc=None, tokens=None), "neither 'doc' nor 'tokens'"),
        (
            lambda h: h.update(doc=numpy.full(WIDTH, numpy.inf).astype("<f2").tobytes()),
            "NaN or inf",
        ),
    ],
)
def test_bad_hidden_fields_are_named_with_file_and_doc(tmp_path, change, message):
    nlp = spacy.blank("en")
    doc = nlp.make_doc("free  cash now")
    hidden = encode_hidden(_states(), SOURCE)
    change(hidden)
    doc.user_data["spacy_distill"] = TeacherTarget(
        labels=("ham", "spam"), exclusive=True, hidden=hidden
    ).to_dict()
    path = tmp_path / "bad.spacy"
    db = DocBin(store_user_data=True)
    db.add(doc)
    db.to_disk(path)
    with pytest.raises(
        TargetFormatError, match=rf"bad.spacy: doc 0: field 'hidden': .*{re.escape(message)}"
    ):
        list(read_targets(path))


def test_float16_overflow_is_clipped_not_inf():
    states = HiddenStates(doc=numpy.asarray([1e6, -1e6, 1.0], dtype="float32"))
    stored = decode_hidden(encode_hidden(states, SOURCE))
    assert numpy.isfinite(stored.doc).all() and stored.doc[0] == 65504.0


def test_random_projection_is_fixed_by_its_seed_and_saved_with_its_fingerprint(tmp_path):
    a, b = HiddenProjection.random(32, 8, seed=3), HiddenProjection.random(32, 8, seed=3)
    assert a.fingerprint == b.fingerprint != HiddenProjection.random(32, 8, seed=4).fingerprint
    x = numpy.random.default_rng(0).normal(size=(200, 32))
    y = a.apply(x)
    assert y.shape == (200, 8)
    # Johnson-Lindenstrauss: norms survive on average.
    assert 0.7 < (numpy.linalg.norm(y, axis=1) / numpy.linalg.norm(x, axis=1)).mean() < 1.3
    a.to_disk(tmp_path / "p.npz")
    loaded = HiddenProjection.from_disk(tmp_path / "p.npz")
    assert loaded.fingerprint == a.fingerprint and loaded.method == "random"
    numpy.testing.assert_allclose(loaded.apply(x), y)
    with pytest.raises(DistillError, match="maps 32 dims, but the teacher's states have 16"):
        loaded.apply(numpy.ones((2, 16)))
    with pytest.raises(DistillError, match="^dims must be between 1"):
        HiddenProjection.random(8, 9)


def test_pca_keeps_the_main_directions_and_refits_identically(tmp_path):
    rng = numpy.random.default_rng(0)
    basis = rng.normal(size=(3, 20))
    x = rng.normal(size=(100, 3)) @ basis + 0.01 * rng.normal(size=(100, 20)) + 5.0
    pca = HiddenProjection.fit_pca(x, 3)
    assert pca.meta["explained_variance"] > 0.99
    assert pca.fingerprint == HiddenProjection.fit_pca(x, 3).fingerprint
    reconstructed = pca.apply(x) @ pca.matrix.T + pca.mean
    assert numpy.abs(reconstructed - x).max() < 0.1
    pca.to_disk(tmp_path / "pca.npz")
    assert HiddenProjection.from_disk(tmp_path / "pca.npz").fingerprint == pca.fingerprint
    with pytest.raises(DistillError, match="at least 3 vectors"):
        HiddenProjection.fit_pca(x[:2], 3)
    # A tampered file is refused.
    data = dict(numpy.load(tmp_path / "pca.npz"))
    data["matrix"] = data["matrix"] * 2
    numpy.savez(tmp_path / "tampered.npz", **data)
    with pytest.raises(DistillError, match="fingerprint"):
        HiddenProjection.from_disk(tmp_path / "tampered.npz")


@pytest.fixture
def hidden_teacher_cfg(tmp_path):
    path = tmp_path / "hidden_teacher.cfg"
    path.write_text(
        '[teacher]\n@teachers = "spacy-distill-test.FakeHiddenTeacher.v1"\nwidth = 16\n',
        encoding="utf8",
    )
    return path


def test_annotate_cli_stores_hidden_states_and_reports_bytes_per_doc(
    tmp_path, spam_jsonl, hidden_teacher_cfg
):
    out = tmp_path / "train.spacy"
    result, output = invoke(
        "annotate",
        spam_jsonl,
        out,
        "--teacher",
        hidden_teacher_cfg,
        "--no-progress",
        "--no-cache",
        "--hidden",
        "both",
    )
    assert result.exit_code == 0, output
    # 16 dims x 2 bytes for the doc, 16 x 2 + 1 per token.
    assert "Hidden states (both, width 16, float16)" in output and "bytes per doc" in output
    docs = list(read_targets(out))
    expected = sum(16 * 2 + len(d) * (16 * 2 + 1) for d in docs) / len(docs)
    assert f"bytes per doc ({expected:.0f} of them arrays and masks)" in output
    stored = get_target(docs[0]).stored_hidden(n_tokens=len(docs[0]))
    numpy.testing.assert_allclose(stored.tokens[0], word_vector(docs[0][0].text, 16), atol=1e-2)
    assert stored.source["model"] == "fake-hidden" and stored.projection is None


def test_annotate_cli_pca_projection_is_saved_and_reused(tmp_path, spam_jsonl, hidden_teacher_cfg):
    out = tmp_path / "train.spacy"
    result, output = invoke(
        "annotate",
        spam_jsonl,
        out,
        "--teacher",
        hidden_teacher_cfg,
        "--no-progress",
        "--no-cache",
        "--hidden",
        "token",
        "--hidden-dims",
        4,
        "--hidden-reduction",
        "pca",
    )
    assert result.exit_code == 0, output
    saved = tmp_path / "train.hidden-projection.npz"
    assert saved.exists() and "pca, 16 -> 4 dims" in output
    projection = HiddenProjection.from_disk(saved)
    stored = get_target(next(iter(read_targets(out)))).stored_hidden()
    assert (
        stored.width == 4
        and stored.doc is None
        and stored.projection["fingerprint"] == projection.fingerprint
    )
    # A later run (another file) reads the same projection: the same space, the same fingerprint.
    other = write_jsonl(tmp_path / "more.jsonl", [{"text": "free cash today"}, {"text": "lunch?"}])
    result, output = invoke(
        "annotate",
        other,
        tmp_path / "more.spacy",
        "--teacher",
        hidden_teacher_cfg,
        "--no-progress",
        "--no-cache",
        "--hidden",
        "token",
        "--hidden-projection",
        saved,
    )
    assert result.exit_code == 0, output
    later = get_target(next(iter(read_targets(tmp_path / "more.spacy")))).stored_hidden()
    assert later.projection["fingerprint"] == projection.fingerprint and later.width == 4
    result, output = invoke(
        "annotate",
        other,
        tmp_path / "x.spacy",
        "--teacher",
        hidden_teacher_cfg,
        "--no-progress",
        "--no-cache",
        "--hidden",
        "token",
        "--hidden-projection",
        saved,
        "--hidden-dims",
        8,
    )
    assert result.exit_code == 1 and "gives 4 dims, but dims is 8" in output


def test_annotate_cli_rejects_teachers_without_states_and_bad_levels(
    tmp_path, spam_jsonl, fake_teacher_cfg, hidden_teacher_cfg
):
    result, output = invoke(
        "annotate",
        spam_jsonl,
        tmp_path / "o.spacy",
        "--teacher",
        fake_teacher_cfg,
        "--no-progress",
        "--no-cache",
        "--hidden",
        "doc",
    )
    assert result.exit_code == 1 and "has no hidden states to distil" in output
    result, output = invoke(
        "annotate",
        spam_jsonl,
        tmp_path / "o.spacy",
        "--teacher",
        hidden_teacher_cfg,
        "--no-progress",
        "--no-cache",
        "--hidden",
        "words",
    )
    assert result.exit_code == 1 and "hidden level must be one of" in output
    assert not (tmp_path / "o.spacy").exists()
