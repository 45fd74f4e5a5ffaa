"""Numbers out of range given to the library's public functions (issue 18, item 16).

The CLI bounds its options, but the library is called from Python too: each function refuses a
bad number itself, with a DistillError naming the argument, before it writes anything (a
negative `limit` used to slice records off the end, and a count of 0 failed deep in a run).
Also: an evaluation record whose id repeats is still protected and evaluated, and `package`
refuses a package name or version that spaCy refuses or that would leave the output folder.
"""

import json
import math
import re
from pathlib import Path

import pytest

from spacy_distill.annotation.annotate import convert
from spacy_distill.arguments import check_float_argument, check_int_argument
from spacy_distill.data.leakage import EvalIndex
from spacy_distill.errors import DistillError
from spacy_distill.evaluation.data import load_evaluation_data
from spacy_distill.evaluation.evaluate import evaluate
from spacy_distill.evaluation.trust import weak_labels
from spacy_distill.packaging.package import package_pipeline
from spacy_distill.training.student_config import make_student_config
from spacy_distill.vectors.build import build_word_vectors, build_word_vectors_from_token_states

from ..conftest import write_jsonl

ROWS = [
    {"id": "a", "text": "win free cash now", "label": "spam"},
    {"id": "b", "text": "see you at lunch", "label": "ham"},
    {"id": "c", "text": "thanks for the notes", "label": "ham"},
]
QUALITY = {"per_label": {"spam": {"f1": 0.4, "support": 3}, "ham": {"f1": 0.9, "support": 5}}}


def _convert(paths, **kwargs):
    return convert(paths["data"], paths["out"] / "out.spacy", **kwargs)


def _load(paths, **kwargs):
    return load_evaluation_data(paths["data"], ["ham", "spam"], exclusive=True, **kwargs)


def _evaluate(paths, **kwargs):
    return evaluate(
        "no/such/student",
        paths["data"],
        paths["out"],
        measure_cost=False,
        plots=False,
        show_progress=False,
        **kwargs,
    )


def _student_config(paths, **kwargs):
    return make_student_config(paths["out"] / "train.spacy", **kwargs)


def _vectors(paths, **kwargs):
    return build_word_vectors(
        None,
        [paths["out"] / "train.spacy"],
        paths["out"],
        cache=paths["out"] / "cache.sqlite",
        show_progress=False,
        **kwargs,
    )


def _token_state_vectors(paths, **kwargs):
    return build_word_vectors_from_token_states(
        [paths["out"] / "train.spacy"], paths["out"], show_progress=False, **kwargs
    )


def _weak_labels(paths, threshold):
    return weak_labels(QUALITY, threshold)


CASES = [
    (_convert, "limit", -5),
    (_convert, "limit", 2.5),
    (_convert, "limit", True),
    (_load, "limit", -1),
    (_load, "limit", 1.5),
    (_load, "limit", True),
    (_evaluate, "limit", -1),
    (_evaluate, "batch_size", 0),
    (_evaluate, "batch_size", 2.0),
    (_evaluate, "latency_n", -1),
    (_evaluate, "latency_n", False),
    (_student_config, "temperature", 0),
    (_student_config, "temperature", -1.0),
    (_student_config, "temperature", math.nan),
    (_student_config, "temperature", "2"),
    (_student_config, "alpha", -0.1),
    (_student_config, "alpha", 1.5),
    (_student_config, "alpha", math.inf),
    (_student_config, "max_steps", 0),
    (_student_config, "max_steps", 10.5),
    (_student_config, "hidden_weight", -1.0),
    (_student_config, "hidden_weight", math.inf),
    (_student_config, "width", 0),
    (_student_config, "width", True),
    (_vectors, "dims", 0),
    (_vectors, "dims", 2.5),
    (_vectors, "min_count", 0),
    (_vectors, "max_words", 0),
    (_vectors, "batch_size", 0),
    (_vectors, "sif_coefficient", 0.0),
    (_vectors, "subword_buckets", -1),
    (_vectors, "layer", 1.5),
    (_token_state_vectors, "dims", -3),
    (_token_state_vectors, "max_words", -1),
    (_token_state_vectors, "min_count", 1.0),
    (_weak_labels, "threshold", -0.1),
    (_weak_labels, "threshold", 1.5),
    (_weak_labels, "threshold", math.nan),
]


@pytest.mark.parametrize(
    "call,argument,value",
    CASES,
    ids=[f"{call.__name__[1:]}-{arg}={value!r}" for call, arg, value in CASES],
)
def test_library_function_refuses_a_bad_number_before_writing(tmp_path, call, argument, value):
    data = write_jsonl(tmp_path / "data.jsonl", ROWS)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(DistillError, match=rf"^{re.escape(argument)} must be "):
        call({"data": data, "out": out}, **{argument: value})
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["data.jsonl", "out"]


def test_subword_settings_are_checked_before_any_file_is_read(tmp_path):
    with pytest.raises(DistillError, match=r"^max_n must be >= 4, got 3$"):
        build_word_vectors(
            None, [tmp_path / "train.spacy"], tmp_path / "out", subword_buckets=8, min_n=4, max_n=3
        )
    assert not list(tmp_path.iterdir())


def test_the_checks_accept_good_numbers_and_say_the_bounds():
    import numpy

    for value in (0, 3, numpy.int64(2)):
        check_int_argument("limit", value, 0)
    for value in (0.5, 1, numpy.float32(0.25)):
        check_float_argument("alpha", value, 0.0, 1.0)
    assert weak_labels(QUALITY, 0.5) == ["spam"]
    messages = [
        (lambda: check_int_argument("width", 9, 1, 8), "width must be between 1 and 8, got 9"),
        (lambda: check_int_argument("n", 9, maximum=8), "n must be <= 8, got 9"),
        (
            lambda: check_float_argument("temperature", 0, 0.0, above_minimum=True),
            "temperature must be > 0, got 0",
        ),
        (
            lambda: check_float_argument("p", 0.0, 0.0, 1.0, above_minimum=True),
            "p must be in (0, 1], got 0.0",
        ),
        (lambda: check_float_argument("alpha", 1.5, 0.0, 1.0), "alpha must be in [0, 1], got 1.5"),
        (lambda: check_float_argument("alpha", "x", 0.0, 1.0), "alpha must be a number, got 'x'"),
    ]
    for check, message in messages:
        with pytest.raises(DistillError, match=f"^{re.escape(message)}$"):
            check()


def test_an_evaluation_record_whose_id_repeats_is_still_protected_and_evaluated(tmp_path):
    # read_records reports a repeated id by default; an evaluation set must not lose the record.
    rows = [
        {"id": "x", "text": "first eval text", "label": "ham"},
        {"id": "x", "text": "second eval text", "label": "spam"},
    ]
    path = write_jsonl(tmp_path / "eval.jsonl", rows)
    index = EvalIndex.from_paths([path])
    assert (
        index.find(None, "second eval text")
        == f"its text is that of the evaluation record {path}:2"
    )
    assert index.find("x", "unrelated") is not None
    data = load_evaluation_data(path, ["ham", "spam"], exclusive=True)
    assert data.texts == ["first eval text", "second eval text"]
    assert data.gold.tolist() == [[1.0, 0.0], [0.0, 1.0]]


def test_a_negative_limit_no_longer_drops_records_from_the_end(tmp_path):
    path = write_jsonl(tmp_path / "eval.jsonl", ROWS)
    assert load_evaluation_data(path, ["ham", "spam"], exclusive=True, limit=2).texts == [
        r["text"] for r in ROWS[:2]
    ]
    with pytest.raises(DistillError, match="limit must be >= 0, got -1"):
        load_evaluation_data(path, ["ham", "spam"], exclusive=True, limit=-1)


def _fake_pipeline(path: Path, **meta) -> Path:
    # The checks run before spaCy reads the pipeline: its two files need only exist.
    path.mkdir()
    (path / "config.cfg").write_text("", encoding="utf8")
    (path / "meta.json").write_text(json.dumps({"lang": "en", **meta}), encoding="utf8")
    return path


@pytest.mark.parametrize(
    "meta,kwargs,message",
    [
        ({"name": "spam", "version": "../x"}, {}, "version '../x': not a package version"),
        (
            {"name": "spam", "version": "1.0.0"},
            {"version": "../../escape"},
            "version '../../escape': not a package version",
        ),
        (
            {"name": "spam", "version": "1.0.0"},
            {"version": "1.0/x"},
            "version '1.0/x': not a package version",
        ),
        (
            {"name": "my-filter", "version": "1.0.0"},
            {},
            "name 'my-filter': not a package name spaCy accepts",
        ),
        (
            {"name": "spam", "version": "1.0.0"},
            {"name": "../x"},
            "name '../x': not a package name spaCy accepts",
        ),
        (
            {"name": "spam", "version": "1.0.0"},
            {"name": "x_"},
            "name 'x_': not a package name spaCy accepts",
        ),
        ({"version": "1.0.0"}, {}, "meta.json: no name; pass name"),
    ],
)
def test_package_refuses_a_bad_name_or_version_before_writing(tmp_path, meta, kwargs, message):
    pipeline = _fake_pipeline(tmp_path / "pipeline", **meta)
    with pytest.raises(DistillError, match=re.escape(message)):
        package_pipeline(pipeline, tmp_path / "out" / "packages", formats=[], **kwargs)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pipeline"]
