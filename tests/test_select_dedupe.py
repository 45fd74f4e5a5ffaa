import json
import random
import string
import sys

import numpy
import pytest

from spacy_distill.data.targets import get_target, read_targets, write_targets
from spacy_distill.errors import DistillError
from spacy_distill.select.dedupe import (
    Duplicate,
    MinHasher,
    NearDuplicateIndex,
    duplicate_record,
    lsh_bands,
    lsh_miss_rate,
    write_duplicate_line,
)
from spacy_distill.select.inherit import INHERITED_METHOD, inherit_targets, read_duplicate_lines

from .conftest import make_target_docs

BASE = "Congratulations! You have won a free cruise to the Bahamas, call 0800 123 456 now to claim"


def random_text(rng: random.Random, n_words: int = 14) -> str:
    return " ".join(
        "".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(3, 8)))
        for _ in range(n_words)
    )


def shingle_jaccard(a: str, b: str, k: int = 5) -> float:
    def shingles(t):
        t = " ".join(t.casefold().split())
        return {t[i : i + k] for i in range(max(1, len(t) - k + 1))}

    sa, sb = shingles(a), shingles(b)
    return len(sa & sb) / len(sa | sb)


def test_exact_duplicates_fold_case_and_spacing():
    with NearDuplicateIndex(near=False) as index:
        assert index.add("a", "Free  cash NOW") is None
        assert index.add("b", "free cash now") == Duplicate("a", "exact", 1.0)
        assert index.add("c", "  FREE\tcash\nnow ") == Duplicate("a", "exact", 1.0)
        # Punctuation is not folded: without near-duplicates this is a new text.
        assert index.add("d", "free cash now!") is None
        assert len(index) == 2


def test_near_duplicates_are_found_and_unrelated_texts_are_not():
    variants = [
        BASE.replace("cruise", "cruize").replace("claim", "clam"),  # a few characters changed
        BASE.replace("won a", "won a brand"),  # one word added
        BASE.upper().replace("!", ""),  # case and punctuation
    ]
    rng = random.Random(0)
    unrelated = [random_text(rng) for _ in range(200)]
    with NearDuplicateIndex(threshold=0.8) as index:
        assert index.add("base", BASE) is None
        assert [index.add(f"u{i}", t) for i, t in enumerate(unrelated)] == [None] * 200
        for i, variant in enumerate(variants):
            dup = index.add(f"v{i}", variant)
            assert dup is not None and dup.of == "base" and dup.kind == "near", (variant, dup)
            assert 0.8 <= dup.similarity < 1.0
            # The MinHash estimate is close to the true Jaccard similarity of the shingles.
            assert abs(dup.similarity - shingle_jaccard(BASE, variant)) < 0.12
        # The duplicates were not indexed: only the representative and the unrelated texts.
        assert len(index) == 201
        # A text well below the threshold is not a duplicate.
        half = BASE[: len(BASE) // 2] + " " + unrelated[0]
        assert shingle_jaccard(BASE, half) < 0.5
        assert index.add("half", half) is None


def test_exact_copy_of_a_near_duplicate_gets_the_same_answer():
    variant = BASE.replace("cruise", "cruize")
    with NearDuplicateIndex() as index:
        index.add("base", BASE)
        first = index.add("v", variant)
        assert first.kind == "near"
        assert index.add("v-copy", variant.lower()) == first


def test_answers_are_the_same_across_runs_and_batchings():
    rng = random.Random(3)
    texts = [random_text(rng) for _ in range(300)]
    texts += [t.replace("a", "e", 1) for t in texts[:100]] + [t.upper() for t in texts[100:150]]
    rng.shuffle(texts)
    items = [(f"k{i}", t) for i, t in enumerate(texts)]
    with NearDuplicateIndex(batch_size=64) as index:
        first = index.add_many(items)
    with NearDuplicateIndex(batch_size=1000) as index:
        second = [index.add(key, text) for key, text in items]
    assert first == second
    assert sum(d is not None for d in first) >= 140
    # Every duplicate points to an earlier text.
    position = {key: i for i, (key, _) in enumerate(items)}
    assert all(position[d.of] < i for i, d in enumerate(first) if d is not None)
    # Another seed gives other signatures (the seed is what fixes them).
    one = MinHasher(seed=0).signatures([BASE])
    assert (one == MinHasher(seed=0).signatures([BASE])).all()
    assert not (one == MinHasher(seed=1).signatures([BASE])).all()


def test_add_reference_indexes_without_being_a_pool_text():
    with NearDuplicateIndex() as index:
        index.add_references([("labelled:1", BASE), ("labelled:2", "hello, how are you today?")])
        # An exact repeat of a reference is not indexed again.
        index.add_reference("labelled:3", BASE.lower())
        assert len(index) == 2
        dup = index.add("p1", BASE.replace("cruise", "cruize"))
        assert (dup.of, dup.kind, dup.of_reference) == ("labelled:1", "near", True)
        assert index.add("p2", "Hello,  how are you TODAY?") == Duplicate(
            "labelled:2", "exact", 1.0, True
        )
        assert index.add("p3", "something else entirely, nothing alike") is None
        dup = index.add("p4", "Something else entirely, nothing alike")
        assert dup == Duplicate("p3", "exact", 1.0, False)


@pytest.mark.parametrize(
    "kwargs,argument",
    [
        ({"threshold": 0.0}, "threshold"),
        ({"threshold": 1.01}, "threshold"),
        ({"threshold": "0.8"}, "threshold"),
        ({"num_perm": 0}, "num_perm"),
        ({"num_perm": 8, "bands": 9}, "num_perm"),
        ({"bands": 0}, "bands"),
        ({"shingle": 0}, "shingle"),
        ({"batch_size": 0}, "batch_size"),
        ({"cache_mib": 0}, "cache_mib"),
    ],
)
def test_bad_arguments_are_named(kwargs, argument):
    with pytest.raises(DistillError, match=f"'{argument}'"):
        NearDuplicateIndex(**kwargs)


def test_threshold_edges_and_band_choice():
    # threshold 1.0 is allowed: only texts whose signatures agree everywhere.
    with NearDuplicateIndex(threshold=1.0) as index:
        assert (index.bands, index.rows) == (1, 128)
        index.add("a", BASE)
        assert index.add("b", BASE.replace("cruise", "cruize")) is None
    for threshold in (0.5, 0.7, 0.8, 0.9):
        bands, rows = lsh_bands(threshold, 128)
        assert bands * rows <= 128
        assert lsh_miss_rate(threshold, bands, rows) <= 0.05
        # One more row per band would miss more than 5% at the threshold: rows is the largest.
        assert lsh_miss_rate(threshold, 128 // (rows + 1), rows + 1) > 0.05
    assert lsh_bands(0.8, 128) == (18, 7)
    # Texts shorter than the shingle are one shingle, and the empty text works too.
    with NearDuplicateIndex(shingle=5) as index:
        assert index.add("a", "hi") is None and index.add("b", "") is None
        assert index.add("c", "HI") == Duplicate("a", "exact", 1.0)
        assert index.add("d", "ho") is None


def test_memory_stays_bounded_on_a_20k_stream():
    psutil = pytest.importorskip("psutil")
    rng = random.Random(5)
    words = [random_text(rng, 1) for _ in range(3000)]
    texts = [" ".join(rng.choice(words) for _ in range(12)) for _ in range(20_000)]
    process = psutil.Process()
    # Resident memory, which also counts SQLite's own (C) allocations that tracemalloc misses.
    with NearDuplicateIndex(batch_size=500, cache_mib=2) as index:
        answers = index.add_many((f"t{i}", t) for i, t in enumerate(texts[:5000]))
        after_5k = process.memory_info().rss
        answers += index.add_many((f"t{i}", t) for i, t in enumerate(texts[5000:], 5000))
        after_20k = process.memory_info().rss
        assert len(index) > 19_000 and len(answers) == 20_000
    # What an in-memory index of the 15k texts added in between would hold: a numpy signature
    # per text in a dict, plus a Python int and a list entry for each of its 18 band keys.
    signature = numpy.zeros(128, dtype=numpy.uint32)
    per_text = sys.getsizeof(signature) + 100 + 18 * (sys.getsizeof(2**62) + 8 + 100)
    in_memory = 15_000 * per_text
    assert in_memory > 40_000_000
    assert after_20k - after_5k < in_memory / 5, (after_5k, after_20k, in_memory)


def test_duplicate_lines_round_trip_and_errors_name_file_line_field(tmp_path):
    path = tmp_path / "dups.jsonl"
    with path.open("w", encoding="utf8") as f:
        write_duplicate_line(f, "p1", "free cash", Duplicate("r1", "near", 0.91796875))
        f.write("\n")
        write_duplicate_line(f, "p2", "FREE CASH", Duplicate("r1", "exact", 1.0))
    lines = list(read_duplicate_lines(path))
    assert [(x.key, x.duplicate.of, x.duplicate.kind, x.line) for x in lines] == [
        ("p1", "r1", "near", 1),
        ("p2", "r1", "exact", 3),
    ]
    assert lines[0].duplicate.similarity == 0.918
    good = duplicate_record("p3", "x", Duplicate("r1", "near", 0.9))
    for field, value, message in [
        ("kind", "fuzzy", "field 'kind'"),
        ("similarity", 1.5, "field 'similarity'"),
        ("duplicate_of", None, "field 'duplicate_of'"),
        ("id", "", "field 'id'"),
    ]:
        bad = tmp_path / f"bad_{field}.jsonl"
        bad.write_text(
            json.dumps(good) + "\n" + json.dumps({**good, field: value}) + "\n", encoding="utf8"
        )
        with pytest.raises(DistillError, match=f"{bad.name}:2: {message}"):
            list(read_duplicate_lines(bad))
    broken = tmp_path / "broken.jsonl"
    broken.write_text("{not json\n", encoding="utf8")
    with pytest.raises(DistillError, match="broken.jsonl:1: not valid JSON"):
        list(read_duplicate_lines(broken))


def test_inherit_targets_round_trip(tmp_path):
    docs = make_target_docs(
        [
            ("free cruise, call now", [0.1, 0.9], {"ham": 0.0, "spam": 1.0}),
            ("see you at lunch", [0.8, 0.2], {}),
            ("gold only text", None, {"ham": 1.0, "spam": 0.0}),
        ]
    )
    # make_target_docs keys its docs "0", "1", "2" (provenance ids).
    targets = write_targets(docs, tmp_path / "targets" / "train.spacy")
    dups = tmp_path / "dups.jsonl"
    with dups.open("w", encoding="utf8") as f:
        write_duplicate_line(f, "pool:7", "FREE cruize, call now!", Duplicate("0", "near", 0.84))
        write_duplicate_line(f, "pool:9", "See you at lunch", Duplicate("1", "exact", 1.0))
        write_duplicate_line(f, "pool:11", "gold only text", Duplicate("2", "exact", 1.0))
        write_duplicate_line(f, "pool:12", "never annotated", Duplicate("missing", "near", 0.9))
    summary = inherit_targets([tmp_path / "targets"], dups, tmp_path / "inherited.spacy")
    assert (summary.n_written, summary.n_missing) == (2, 2)
    back = list(read_targets(summary.path))
    assert [d.text for d in back] == ["FREE cruize, call now!", "See you at lunch"]
    first, second = (get_target(d) for d in back)
    source = get_target(docs[0])
    numpy.testing.assert_allclose(first.scores, source.scores)
    numpy.testing.assert_allclose(second.scores, get_target(docs[1]).scores)
    assert first.teacher_id == "toy" and back[0].cats == {}
    prov = first.provenance
    assert (prov.id, prov.parent, prov.method) == ("pool:7", "0", INHERITED_METHOD)
    assert prov.params == {"from": "0", "kind": "near", "similarity": 0.84}
    assert targets.exists()


def test_inherit_targets_names_the_bad_duplicate_line(tmp_path):
    targets = write_targets(make_target_docs([("a text", [0.3, 0.7], {})]), tmp_path / "t.spacy")
    dups = tmp_path / "dups.jsonl"
    dups.write_text(
        json.dumps(duplicate_record("p1", "a text!", Duplicate("0", "near", 0.9)))
        + "\n"
        + json.dumps({"id": "p2", "text": 5, "duplicate_of": "0", "kind": "near", "similarity": 1})
        + "\n",
        encoding="utf8",
    )
    with pytest.raises(DistillError, match=r"dups.jsonl:2: field 'text'"):
        inherit_targets([targets], dups, tmp_path / "out.spacy")
