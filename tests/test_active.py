"""`run_rounds` and `spacy-distill active`: rounds that spend exactly the budget, never label a
text twice, train a student each round, resume, and report a learning curve."""

import json

import numpy
import pytest

from spacy_distill.active.rounds import round_sizes, run_rounds
from spacy_distill.annotation.annotate import annotate
from spacy_distill.errors import DistillError

from .conftest import FakeTeacher, invoke_cli, write_jsonl

SPAMMY = "free cash prize win reward claim".split()
HAMMY = "lunch meeting notes home tomorrow thanks office dinner".split()


def texts(n, seed):
    rng = numpy.random.default_rng(seed)
    out = []
    for i in range(n):
        k = int(rng.integers(0, 5))
        words = list(rng.choice(SPAMMY, size=k)) + list(rng.choice(HAMMY, size=6 - k))
        out.append(" ".join(rng.permutation(words)) + f" {seed}-{i}")
    return out


def labelled(n, seed):
    teacher = FakeTeacher()
    rows = []
    for text in texts(n, seed):
        label = teacher.labels[int(numpy.argmax(teacher.score([text])[0]))]
        rows.append({"text": text, "label": label})
    return rows


@pytest.fixture
def active_data(tmp_path):
    pool = write_jsonl(tmp_path / "pool.jsonl", [{"text": t} for t in texts(120, 0)])
    dev_jsonl = write_jsonl(tmp_path / "dev.jsonl", labelled(30, 1))
    test_jsonl = write_jsonl(tmp_path / "test.jsonl", labelled(40, 2))
    annotate(dev_jsonl, tmp_path / "dev.spacy", FakeTeacher(), show_progress=False)
    annotate(test_jsonl, tmp_path / "test.spacy", FakeTeacher(), show_progress=False)
    return pool, tmp_path / "dev.spacy", tmp_path / "test.spacy"


def test_round_sizes():
    assert round_sizes(100, 4, None) == [25, 25, 25, 25]
    assert round_sizes(100, 3, 10) == [10, 45, 45]
    assert round_sizes(10, 3, 1) == [1, 5, 4]
    with pytest.raises(DistillError, match="`budget` 3 leaves 0 texts"):
        round_sizes(3, 2, 3)


def test_rounds_spend_the_budget_and_resume(tmp_path, active_data):
    pool, dev, test = active_data
    teacher = FakeTeacher()
    out = tmp_path / "active"
    results = run_rounds(
        pool,
        out,
        teacher,
        budget=36,
        rounds=3,
        first=12,
        strategy="hybrid",
        dev=dev,
        test=test,
        max_steps=40,
    )
    assert [r.n_picked for r in results] == [12, 12, 12]
    assert [r.strategy for r in results] == ["random", "hybrid", "hybrid"]
    assert [r.total_teacher_calls for r in results] == [12, 24, 36]
    assert sum(teacher.calls) == 36  # no cache: every pick is one call, none twice
    picked = [
        json.loads(line)["text"]
        for r in range(3)
        for line in (out / f"round_{r}" / "picks.jsonl").read_text("utf8").splitlines()
    ]
    assert len(set(picked)) == 36
    assert [r.n_labelled for r in results] == [12, 24, 36]
    for r in results:
        assert r.macro_f1 is not None and 0 <= r.macro_f1 <= 1
        assert r.teacher_macro_f1 == pytest.approx(1.0)  # the test gold is the teacher's argmax
        assert r.retention == pytest.approx(r.macro_f1) and r.agreement is not None
    # The students learn: the last beats always answering the majority label.
    gold = [
        json.loads(line)["label"]
        for line in (tmp_path / "test.jsonl").read_text("utf8").splitlines()
    ]
    majority = max(gold.count(label) for label in set(gold)) / len(gold)
    assert results[-1].accuracy > majority
    # A rerun finds every round done: no teacher call, the same results.
    again = FakeTeacher()
    assert (
        run_rounds(
            pool,
            out,
            again,
            budget=36,
            rounds=3,
            first=12,
            strategy="hybrid",
            dev=dev,
            test=test,
            max_steps=40,
        )
        == results
    )
    assert again.calls == []


def test_cache_hits_cost_nothing(tmp_path, active_data):
    pool, dev, test = active_data
    cache = tmp_path / "cache.sqlite"
    kwargs = dict(
        budget=20, rounds=2, strategy="uncertainty", dev=dev, test=test, max_steps=20, cache=cache
    )
    first = run_rounds(pool, tmp_path / "a", FakeTeacher(), **kwargs)
    assert first[-1].total_teacher_calls == 20
    second = run_rounds(pool, tmp_path / "b", FakeTeacher(), **kwargs)
    assert second[-1].total_teacher_calls == 0 and sum(r.cache_hits for r in second) == 20


def test_cli_active_writes_report_and_curve(tmp_path, active_data, fake_teacher_cfg):
    pool, dev, test = active_data
    out = tmp_path / "active"
    result, output = invoke_cli(
        "active",
        pool,
        "-o",
        out,
        "-t",
        fake_teacher_cfg,
        "--budget",
        20,
        "--rounds",
        2,
        "--dev",
        dev,
        "--test",
        test,
        "--max-steps",
        20,
        "--strategy",
        "diversity",
        "--no-cache",
    )
    assert result.exit_code == 0, output
    assert "Round 1 (diversity): 10 picked, 10 teacher calls (20 in all)" in output
    report = json.loads((out / "report.json").read_text("utf8"))
    assert [r["total_teacher_calls"] for r in report["rounds"]] == [10, 20]
    assert (out / "learning_curve.png").stat().st_size > 1000
    assert "| 1 | diversity | 10 | 20 | 10 (20) |" in (out / "report.md").read_text("utf8")
    result, output = invoke_cli(
        "active",
        pool,
        "-o",
        tmp_path / "x",
        "-t",
        fake_teacher_cfg,
        "--budget",
        3,
        "--rounds",
        2,
        "--first",
        3,
        "--dev",
        dev,
        "--test",
        test,
    )
    assert result.exit_code == 1 and "--budget 3 leaves 0 texts" in output
