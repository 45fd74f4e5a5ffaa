"""`select_pool` and `spacy-distill select`: exact budgets, reproducible picks, exclusion,
dedupe, and strategies that pick what they say they pick."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy
import pytest

from spacy_distill.data.records import RecordError
from spacy_distill.errors import DistillError
from spacy_distill.registry import registry
from spacy_distill.select import duplicates_path, select_pool
from spacy_distill.select.scoring import HashedFeatures, StudentScorer, uncertainty
from spacy_distill.select.strategies import RandomSelector, balanced_quotas, k_center_greedy

from .conftest import invoke_cli, write_jsonl

WORDS = "apple river cloud stone music garden window paper silver orange forest candle".split()


def varied_texts(n, seed=0):
    """n distinct texts that are not near-duplicates of each other (random word sequences)."""
    rng = numpy.random.default_rng(seed)
    texts = set()
    while len(texts) < n:
        texts.add(" ".join(rng.choice(WORDS, size=8)) + f" {len(texts)}")
    return sorted(texts)


def read_lines(path):
    return [json.loads(line) for line in Path(path).read_text("utf8").splitlines()]


@pytest.fixture
def pool_path(tmp_path):
    return write_jsonl(tmp_path / "pool.jsonl", [{"text": t} for t in varied_texts(60)])


def test_random_is_exact_reproducible_and_order_free(tmp_path, pool_path):
    first = select_pool(pool_path, tmp_path / "a.jsonl", 17, seed=3)
    select_pool(pool_path, tmp_path / "b.jsonl", 17, seed=3)
    assert first.n_selected == 17 and first.n_candidates == 60
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()
    picks = read_lines(tmp_path / "a.jsonl")
    assert [p["select"]["rank"] for p in picks] == list(range(1, 18))
    assert all(p["select"]["strategy"] == "random" and p["id"].startswith("pool:") for p in picks)
    # Another seed picks other texts; a reversed pool (ids given) picks the same ones.
    select_pool(pool_path, tmp_path / "c.jsonl", 17, seed=4)
    assert {p["text"] for p in read_lines(tmp_path / "c.jsonl")} != {p["text"] for p in picks}
    rows = [{"id": f"r{i}", "text": t} for i, t in enumerate(varied_texts(60))]
    forward = write_jsonl(tmp_path / "f.jsonl", rows)
    backward = write_jsonl(tmp_path / "r.jsonl", rows[::-1])
    select_pool(forward, tmp_path / "f_out.jsonl", 10, seed=1)
    select_pool(backward, tmp_path / "r_out.jsonl", 10, seed=1)
    assert read_lines(tmp_path / "f_out.jsonl") == read_lines(tmp_path / "r_out.jsonl")


def test_budget_larger_than_pool_takes_all_and_warns(tmp_path, pool_path):
    summary = select_pool(pool_path, tmp_path / "out.jsonl", 1000)
    assert summary.n_selected == 60 and len(read_lines(tmp_path / "out.jsonl")) == 60
    assert any("budget 1000 not met" in w for w in summary.warnings)


def test_exclude_labelled_eval_and_target_files(tmp_path, pool_path):
    texts = varied_texts(60)
    earlier = tmp_path / "round1.jsonl"
    select_pool(pool_path, earlier, 20, seed=0)
    eval_set = write_jsonl(tmp_path / "test.jsonl", [{"text": t.upper()} for t in texts[:5]])
    summary = select_pool(
        pool_path, tmp_path / "round2.jsonl", 100, exclude=[earlier, eval_set], seed=0
    )
    first = {p["text"] for p in read_lines(earlier)}
    second = {p["text"] for p in read_lines(tmp_path / "round2.jsonl")}
    assert not first & second and not second & set(texts[:5])
    assert summary.n_excluded == len(first | set(texts[:5]))
    assert summary.n_selected == 60 - summary.n_excluded
    # Annotated target files exclude by their provenance ids (the picks' keys) and texts.
    from spacy_distill.annotation.annotate import annotate

    from .conftest import FakeTeacher

    annotate(earlier, tmp_path / "round1.spacy", FakeTeacher(), show_progress=False)
    select_pool(pool_path, tmp_path / "round2b.jsonl", 100, exclude=[tmp_path / "round1.spacy"])
    assert not first & {p["text"] for p in read_lines(tmp_path / "round2b.jsonl")}


def test_dedupe_drops_repeats_and_names_what_they_repeat(tmp_path):
    texts = varied_texts(20)
    rows = [{"text": t} for t in texts]
    rows += [{"text": "  " + texts[3].upper() + " "}, {"text": texts[7] + " !!"}]
    pool = write_jsonl(tmp_path / "pool.jsonl", rows)
    summary = select_pool(pool, tmp_path / "out.jsonl", 100)
    assert summary.n_candidates == 20 and summary.n_duplicates == 2
    assert summary.n_exact_duplicates == 1
    dupes = {d["id"]: d for d in read_lines(duplicates_path(tmp_path / "out.jsonl"))}
    assert dupes["pool:21"]["duplicate_of"] == "pool:4" and dupes["pool:21"]["kind"] == "exact"
    assert dupes["pool:22"]["duplicate_of"] == "pool:8" and dupes["pool:22"]["kind"] == "near"
    # Without dedupe every text is a candidate.
    assert select_pool(pool, tmp_path / "all.jsonl", 100, dedupe=False).n_candidates == 22


def test_bad_line_names_file_and_line_and_keeps_nothing(tmp_path):
    pool = tmp_path / "pool.jsonl"
    pool.write_text('{"text": "fine text"}\n{"text": 3}\n{"text": "another one"}\n', "utf8")
    with pytest.raises(RecordError, match=r"pool.jsonl:2: field 'text'"):
        select_pool(pool, tmp_path / "out.jsonl", 1)
    assert not (tmp_path / "out.jsonl").exists()
    summary = select_pool(pool, tmp_path / "out.jsonl", 5, on_error="skip")
    assert summary.n_selected == 2 and "pool.jsonl:2" in summary.errors[0]


def test_chunk_folder_is_one_pool(tmp_path):
    texts = varied_texts(30)
    folder = tmp_path / "chunks"
    folder.mkdir()
    write_jsonl(folder / "000.jsonl", [{"text": t} for t in texts[:15]])
    write_jsonl(folder / "001.jsonl", [{"text": t} for t in texts[15:]])
    summary = select_pool(folder, tmp_path / "out.jsonl", 30)
    assert summary.n_read == 30 and {p["text"] for p in read_lines(tmp_path / "out.jsonl")} == set(
        texts
    )


def spam_pool(tmp_path, n=80):
    rng = numpy.random.default_rng(0)
    spammy = "free cash prize win reward claim".split()
    hammy = "lunch meeting notes home tomorrow thanks".split()
    rows = []
    for i in range(n):
        k = int(rng.integers(0, 5))
        words = list(rng.choice(spammy, size=k)) + list(rng.choice(hammy, size=5 - k))
        rows.append({"text": " ".join(words) + f" number {i}"})
    return write_jsonl(tmp_path / "pool.jsonl", rows)


def test_uncertainty_picks_the_least_certain(tmp_path, spacy_teacher_path):
    pool = spam_pool(tmp_path)
    summary = select_pool(
        pool,
        tmp_path / "out.jsonl",
        10,
        strategy="uncertainty",
        student=spacy_teacher_path,
        dedupe=False,
    )
    assert summary.n_selected == 10
    scorer = StudentScorer(spacy_teacher_path)
    texts = [r["text"] for r in read_lines(pool)]
    scores = uncertainty(scorer.probabilities(texts), scorer.exclusive)
    picks = read_lines(tmp_path / "out.jsonl")
    picked = [p["select"]["score"] for p in picks]
    assert picked == sorted(picked, reverse=True)
    assert min(picked) >= numpy.sort(scores)[-10] - 1e-6
    assert "torn between" in picks[0]["select"]["reason"]


def test_strategies_that_need_a_student_say_so(tmp_path, pool_path):
    for strategy in ("uncertainty", "hybrid"):
        with pytest.raises(DistillError, match=f"strategy '{strategy}' needs `student`"):
            select_pool(pool_path, tmp_path / "out.jsonl", 3, strategy=strategy)
    with pytest.raises(DistillError, match="unknown selector 'nope'"):
        select_pool(pool_path, tmp_path / "out.jsonl", 3, strategy="nope")


def test_diversity_covers_clusters(tmp_path):
    # Three topics of ten texts each: three picks take one of each.
    topics = ["football match goal team", "stock market shares price", "recipe oven bake flour"]
    rows = [{"text": f"{topic} {WORDS[i]} {i}"} for topic in topics for i in range(10)]
    pool = write_jsonl(tmp_path / "pool.jsonl", rows)
    select_pool(pool, tmp_path / "out.jsonl", 3, strategy="diversity", dedupe=False)
    picked = [p["text"] for p in read_lines(tmp_path / "out.jsonl")]
    assert {next(t for t in topics if p.startswith(t)) for p in picked} == set(topics)
    # With one topic already labelled, two picks cover the other two.
    labelled = write_jsonl(tmp_path / "labelled.jsonl", [{"text": f"{topics[0]} extra words"}])
    select_pool(
        pool, tmp_path / "out2.jsonl", 2, strategy="diversity", dedupe=False, exclude=[labelled]
    )
    picked = [p["text"] for p in read_lines(tmp_path / "out2.jsonl")]
    assert {next(t for t in topics if p.startswith(t)) for p in picked} == set(topics[1:])


def test_k_center_greedy_takes_the_farthest_point():
    vectors = HashedFeatures()(["a b c", "a b c d", "x y z", "totally different words"])
    picks = k_center_greedy(vectors, 2)
    assert picks[0][1] == numpy.inf
    distances = 1 - vectors @ vectors[picks[0][0]]
    assert picks[1][0] == int(numpy.argmax(distances))


def test_balanced_quotas():
    assert balanced_quotas({0: 100, 1: 3}, 20) == {0: 17, 1: 3}
    assert balanced_quotas({0: 100, 1: 100, 2: 0}, 21) == {0: 11, 1: 10, 2: 0}
    assert balanced_quotas({0: 2, 1: 3}, 50) == {0: 2, 1: 3}


def test_hybrid_balances_predicted_classes(tmp_path, spacy_teacher_path):
    # 70 hammy texts and 10 spammy ones: an equal share for each predicted label.
    rows = [{"text": f"see you at lunch tomorrow {WORDS[i % 12]} {i}"} for i in range(70)]
    rows += [{"text": f"free cash prize win now {WORDS[i % 12]} {i}"} for i in range(10)]
    pool = write_jsonl(tmp_path / "pool.jsonl", rows)
    scorer = StudentScorer(spacy_teacher_path)
    predicted = scorer.probabilities([r["text"] for r in rows]).argmax(axis=1)
    n_spam = int((predicted == scorer.labels.index("spam")).sum())
    assert 0 < n_spam < 20
    select_pool(pool, tmp_path / "out.jsonl", 20, strategy="hybrid", student=scorer, dedupe=False)
    picks = read_lines(tmp_path / "out.jsonl")
    assert len(picks) == 20
    spam_picks = [p for p in picks if "predicted 'spam'" in p["select"]["reason"]]
    assert len(spam_picks) == min(n_spam, 10)
    # Random would take about 20 * n_spam / 80 of them.
    assert len(spam_picks) > 20 * n_spam / 80


def test_user_selector_from_the_registry(tmp_path, pool_path):
    class Last:
        name = "last"
        needs_student = False

        def select(self, context):
            records = list(context.candidates)[-context.n_picks :]
            return [
                RandomSelector().select(context)[0].__class__(r, "last", 0.0, "last")
                for r in records
            ]

    registry.spacy_distill_selectors.register("test.Last.v1", func=lambda: Last())
    select_pool(pool_path, tmp_path / "out.jsonl", 4, strategy="test.Last.v1")
    assert [p["text"] for p in read_lines(tmp_path / "out.jsonl")] == varied_texts(60)[-4:]

    class Greedy(Last):
        def select(self, context):
            return super().select(context) * 2

    with pytest.raises(DistillError, match="returned 8 picks"):
        select_pool(pool_path, tmp_path / "bad.jsonl", 4, strategy=Greedy())
    assert not (tmp_path / "bad.jsonl").exists()


def test_cli_select(tmp_path, pool_path, spacy_teacher_path):
    out = tmp_path / "out.jsonl"
    result, output = invoke_cli("select", pool_path, "-o", out, "--budget", 5, "--seed", 2)
    assert result.exit_code == 0, output
    assert "Wrote 5 picks (random, seed 2)" in output and len(read_lines(out)) == 5
    result, output = invoke_cli(
        "select", pool_path, "-o", out, "--budget", 5, "--strategy", "hybrid"
    )
    assert result.exit_code == 1 and "needs --student" in output
    result, output = invoke_cli(
        "select",
        pool_path,
        "-o",
        out,
        "--budget",
        5,
        "--strategy",
        "uncertainty",
        "--student",
        spacy_teacher_path,
    )
    assert result.exit_code == 0 and "select: scored 60/60 candidates" in output, output


def test_memory_stays_flat_on_a_large_pool(tmp_path):
    import tracemalloc

    n = 60_000
    pool = tmp_path / "pool.jsonl"
    with pool.open("w", encoding="utf8") as f:
        for i in range(n):
            f.write(
                json.dumps({"text": f"message number {i} about {WORDS[i % 12]} and more words"})
                + "\n"
            )
    tracemalloc.start()
    summary = select_pool(pool, tmp_path / "out.jsonl", 100, near_duplicates=False)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert summary.n_read == n and summary.n_selected == 100
    # The records of the pool alone would take far more (> 400 bytes each in Python objects).
    assert peak < 8_000_000, peak


KILL_SCRIPT = """
import sys
from spacy_distill.select import select_pool
select_pool(sys.argv[1], sys.argv[2], 500, strategy="diversity", seed=5)
"""


@pytest.mark.slow
def test_killed_select_reruns_to_the_same_output(tmp_path):
    pool = write_jsonl(tmp_path / "pool.jsonl", [{"text": t} for t in varied_texts(4000)])
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    reference = tmp_path / "reference.jsonl"
    subprocess.run([sys.executable, "-c", KILL_SCRIPT, pool, reference], check=True, env=env)
    out = tmp_path / "out.jsonl"
    proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, pool, out], env=env)
    # Killed mid-run: once it is reading the pool (its duplicates' temporary file exists).
    started = duplicates_path(out).with_name(duplicates_path(out).name + ".tmp")
    deadline = time.monotonic() + 60
    while not started.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert started.exists()
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    assert not out.exists()
    subprocess.run([sys.executable, "-c", KILL_SCRIPT, pool, out], check=True, env=env)
    assert out.read_bytes() == reference.read_bytes()
    assert duplicates_path(out).read_bytes() == duplicates_path(reference).read_bytes()
    assert not list(tmp_path.glob("*.tmp"))  # the killed run's temporary is replaced


def test_duplicates_inherit_their_texts_targets_through_the_cli(tmp_path):
    from spacy_distill.annotation.annotate import annotate
    from spacy_distill.data.targets import get_target, read_targets

    from .conftest import FakeTeacher

    texts = varied_texts(10)
    rows = [{"text": t} for t in texts] + [{"text": texts[2].upper()}, {"text": texts[5] + " !!"}]
    pool = write_jsonl(tmp_path / "pool.jsonl", rows)
    picks = tmp_path / "picks.jsonl"
    select_pool(pool, picks, 10)
    teacher = FakeTeacher()
    annotate(picks, tmp_path / "picks.spacy", teacher, show_progress=False)
    out = tmp_path / "inherited.spacy"
    result, output = invoke_cli(
        "inherit", tmp_path / "picks.spacy", "-d", duplicates_path(picks), "-o", out
    )
    assert result.exit_code == 0, output
    assert "Wrote 2 inherited targets" in output and sum(teacher.calls) == 10
    labelled = {
        get_target(d).provenance.id: get_target(d) for d in read_targets(tmp_path / "picks.spacy")
    }
    for doc in read_targets(out):
        target = get_target(doc)
        assert target.provenance.method == "inherited" and doc.text in (
            rows[10]["text"],
            rows[11]["text"],
        )
        source = labelled[target.provenance.parent]
        assert numpy.allclose(target.scores, source.scores)
