"""Augmenters without models: noise, obfuscation, synonyms (table and spaCy vectors), chains,
the `[augment]` config, the CLI, the leakage guard and provenance from augment to training."""

import json
import random
from pathlib import Path

import numpy
import pytest
import spacy
from typer.testing import CliRunner

from spacy_distill.augment import base, noise, obfuscation, synonyms
from spacy_distill.augment.compose import Chain
from spacy_distill.augment.config import load_augment_config
from spacy_distill.augment.run import AugmentSummary, augment_file, augment_records
from spacy_distill.cli import app
from spacy_distill.cli.augment import augment_cli  # noqa: F401  (registers the command)
from spacy_distill.data.leakage import LeakageError
from spacy_distill.data.records import read_records
from spacy_distill.errors import DistillError
from spacy_distill.registry import registry

from .conftest import FakeTeacher, write_jsonl

LONG_TEXT = " ".join(["the quick brown fox jumps over the lazy dog while people watch"] * 150)
EDGE_TEXTS = ["", "   \n\t ", "😀🎉👍", "Привет, как дела?", "你好世界", "a"]


def make_noise_augmenters():
    return {
        "typos": noise.KeyboardTypos(rate=0.2),
        "chars": noise.CharNoise(rate=0.2),
        "words": noise.WordNoise(dropout=0.2, swap=0.2),
        "case": noise.CaseNoise(rate=0.5),
        "leet": obfuscation.Leetspeak(rate=0.5),
        "homoglyphs": obfuscation.Homoglyphs(rate=0.5),
        "split": obfuscation.SplitLetters(rate=0.5),
        "repeats": obfuscation.RepeatedLetters(rate=0.2),
        "table": synonyms.SynonymTable(
            {"free": ["gratis", "complimentary"], "win": ["earn"]}, rate=0.5
        ),
    }


@pytest.mark.parametrize("name", sorted(make_noise_augmenters()))
def test_deterministic_under_a_seed(name):
    augmenter = make_noise_augmenters()[name]
    text = "Win a FREE prize now, claim your free cash today"
    first = augmenter.augment(text, base.derive_rng(0, name, "r1"), 3)
    again = augmenter.augment(text, base.derive_rng(0, name, "r1"), 3)
    other = augmenter.augment(text, base.derive_rng(1, name, "r1"), 3)
    assert first == again and first
    assert all(v != text for v in first) and len(set(first)) == len(first)
    assert first != other or name == "table"  # a two-entry table has few variants


@pytest.mark.parametrize("name", sorted(make_noise_augmenters()))
@pytest.mark.parametrize("text", EDGE_TEXTS)
def test_edge_texts_are_handled(name, text):
    augmenter = make_noise_augmenters()[name]
    variants = augmenter.augment(text, random.Random(0), 3)
    assert all(isinstance(v, str) and v.strip() and v != text for v in variants)
    if not text.strip() or text == "😀🎉👍":
        assert variants == [] or name in ("words",)  # nothing to change in them


def test_noise_rates_within_tolerance():
    rng = random.Random(0)
    letters = [c for c in LONG_TEXT if c.isalpha()]
    # Keyboard typos: a letter changes with probability rate (to a different key, always).
    typo = noise.KeyboardTypos(rate=0.1).transform(LONG_TEXT, rng)
    assert len(typo) == len(LONG_TEXT)
    changed = sum(a != b for a, b in zip(LONG_TEXT, typo)) / len(letters)
    assert abs(changed - 0.1) < 0.015
    # Substitutions only: the share of changed characters is rate x (1 - 1/alphabet size).
    sub = noise.CharNoise(rate=0.2, ops=["substitute"]).transform(LONG_TEXT, rng)
    alphabet = len({c for c in LONG_TEXT if c.isalpha()})
    expected = 0.2 * (1 - 1 / alphabet)
    assert abs(sum(a != b for a, b in zip(LONG_TEXT, sub)) / len(letters) - expected) < 0.015
    # Deletions: the text loses rate of its letters.
    deleted = noise.CharNoise(rate=0.1, ops=["delete"]).transform(LONG_TEXT, rng)
    assert abs((len(LONG_TEXT) - len(deleted)) / len(letters) - 0.1) < 0.015
    # Word dropout.
    words = LONG_TEXT.split()
    dropped = noise.WordNoise(dropout=0.3, swap=0.0).transform(LONG_TEXT, random.Random(1)).split()
    assert abs(1 - len(dropped) / len(words) - 0.3) < 0.045  # 4 standard deviations
    # Leetspeak: a letter of the table changes with probability rate.
    leet = obfuscation.Leetspeak(rate=0.4).transform(LONG_TEXT, rng)
    eligible = [i for i, c in enumerate(LONG_TEXT) if c in obfuscation.LEET]
    assert abs(sum(leet[i] != LONG_TEXT[i] for i in eligible) / len(eligible) - 0.4) < 0.02
    # Repeated letters: each letter is followed by 1..max_repeat copies with probability rate.
    repeated = obfuscation.RepeatedLetters(rate=0.1, max_repeat=1).transform(LONG_TEXT, rng)
    assert abs((len(repeated) - len(LONG_TEXT)) / len(letters) - 0.1) < 0.015


def test_leetspeak_maps_as_documented():
    text = "a b e g i l o s t z A S"
    out = obfuscation.Leetspeak(rate=1.0).transform(text, random.Random(3))
    for original, new in zip(text, out):
        if original == " ":
            assert new == " "
        else:
            assert new in obfuscation.LEET[original.lower()]
    assert obfuscation.Leetspeak(rate=1.0).transform(
        "xyz Привет", random.Random(0)
    ) == "xyz Привет".replace("z", "2")


def test_homoglyphs_split_letters_and_typos_do_what_they_say():
    out = obfuscation.Homoglyphs(rate=1.0).transform("ape", random.Random(0))
    assert out == "\u0430\u0440\u0435" and out != "ape"
    split = obfuscation.SplitLetters(rate=1.0, separators=[" "]).transform(
        "free cash!", random.Random(0)
    )
    assert split == "f r e e c a s h!"
    typo = noise.KeyboardTypos(rate=1.0).transform("Qa", random.Random(0))
    assert typo[0] in "WA12" and typo[0].isupper() or typo[0] in "12"
    assert typo[1] in noise.KEYBOARD_NEIGHBOURS["a"]


def test_bad_parameters_name_the_field():
    with pytest.raises(DistillError, match="rate"):
        noise.KeyboardTypos(rate=1.5)
    with pytest.raises(DistillError, match="ops"):
        noise.CharNoise(ops=["explode"])
    with pytest.raises(DistillError, match="n:"):
        obfuscation.Leetspeak(n=-1)


def test_synonym_table_replaces_from_the_table(tmp_path):
    table = {"free": ["gratis", "complimentary"], "prize": ["award"]}
    path = tmp_path / "synonyms.json"
    path.write_text(json.dumps(table), encoding="utf8")
    augmenter = registry.text_augmenters.get("spacy-distill.SynonymTable.v1")(
        path=path, n=3, rate=1.0
    )
    variants = augmenter.augment("Win a Free prize", random.Random(0), 3)
    assert variants
    for variant in variants:
        words = variant.split()
        assert words[:2] == ["Win", "a"]
        assert words[2] in ("Gratis", "Complimentary", "Free")  # the case is kept
        assert words[3] in ("award", "prize")
    tsv = tmp_path / "synonyms.tsv"
    tsv.write_text("free\tgratis\n\nbad line\n", encoding="utf8")
    with pytest.raises(DistillError, match=r"synonyms.tsv:3"):
        synonyms.read_synonym_table(tsv)


def build_vector_pipeline(path: Path, with_pos: bool) -> Path:
    """A blank English pipeline with 2-d vectors: 'good' is near 'great' (ADJ) and 'goods' (NOUN),
    'film' near 'movie'. With `with_pos`, an attribute ruler tags them."""
    nlp = spacy.blank("en")
    vectors = {
        "good": [1.0, 0.05],
        "great": [0.98, 0.1],
        "goods": [0.99, 0.0],
        "film": [0.0, 1.0],
        "movie": [0.1, 0.99],
        "bad": [-1.0, 0.0],
    }
    for word, vector in vectors.items():
        nlp.vocab.set_vector(word, numpy.asarray(vector, dtype="float32"))
    if with_pos:
        ruler = nlp.add_pipe("attribute_ruler")
        tags = {
            "good": "ADJ",
            "great": "ADJ",
            "goods": "NOUN",
            "film": "NOUN",
            "movie": "NOUN",
            "a": "DET",
        }
        for word, pos in tags.items():
            ruler.add([[{"LOWER": word}]], {"POS": pos})
    nlp.to_disk(path)
    return path


@pytest.mark.parametrize("with_pos", [False, True])
def test_vector_synonyms_come_from_the_vectors(tmp_path, with_pos):
    path = build_vector_pipeline(tmp_path / "vectors", with_pos)
    build = registry.text_augmenters.get("spacy-distill.VectorSynonyms.v1")
    augmenter = build(model=str(path), n=4, rate=1.0, top_k=3, min_similarity=0.5)
    assert augmenter.tags_pos is with_pos
    variants = augmenter.augment("a Good film", random.Random(0), 4)
    assert variants
    options = {"good": {"great"} if with_pos else {"great", "goods"}, "film": {"movie"}}
    seen = set()
    for variant in variants:
        _, adjective, noun = variant.split()
        assert adjective.lower() in options["good"] | {"good"} and adjective[0].isupper()
        assert noun in options["film"] | {"film"}
        seen.add(adjective.lower())
    if with_pos:
        assert "goods" not in seen  # a noun never replaces an adjective
    assert augmenter.augment("😀 Привет", random.Random(0), 2) == []


def test_chain_and_config_order(tmp_path):
    cfg = tmp_path / "augment.cfg"
    cfg.write_text(
        "[augment]\nseed = 3\n\n[augment.steps]\n\n"
        '[augment.steps.zeta]\n@text_augmenters = "spacy-distill.Leetspeak.v1"\nn = 1\nrate = 1.0\n\n'
        '[augment.steps.alpha]\n@text_augmenters = "spacy-distill.Chain.v1"\nn = 2\n\n'
        "[augment.steps.alpha.steps]\n\n"
        '[augment.steps.alpha.steps.case]\n@text_augmenters = "spacy-distill.CaseNoise.v1"\n'
        'rate = 1.0\nmodes = ["upper"]\n\n'
        "[augment.steps.alpha.steps.split]\n"
        '@text_augmenters = "spacy-distill.SplitLetters.v1"\nrate = 1.0\nseparators = ["."]\n',
        encoding="utf8",
    )
    plan = load_augment_config(cfg, {"augment.steps.alpha.n": 1})
    assert list(plan.steps) == ["zeta", "alpha"] and plan.seed == 3 and plan.keep_seeds is False
    chain = plan.steps["alpha"]
    assert isinstance(chain, Chain) and chain.n == 1
    assert chain.augment("free cash", random.Random(0), 1) == ["F.R.E.E C.A.S.H"]
    assert [s["method"] for s in chain.params["steps"]] == [
        "spacy-distill.CaseNoise.v1",
        "spacy-distill.SplitLetters.v1",
    ]
    bad = tmp_path / "bad.cfg"
    bad.write_text("[augment]\nseeds = 1\n", encoding="utf8")
    with pytest.raises(DistillError, match="seeds"):
        load_augment_config(bad)


def _records(tmp_path, rows):
    path = write_jsonl(tmp_path / "seeds.jsonl", rows)
    return [r for r in read_records(path)]


def test_runner_dedups_drops_echoes_and_records_provenance(tmp_path):
    rows = [
        {"text": "free cash", "label": "spam", "id": "s1"},
        {"text": "FREE CASH", "label": "spam"},
        {"text": "😀", "label": "ham"},
        {"text": "see you", "label": "ham"},
    ]
    records = _records(tmp_path, rows)
    steps = {"case": noise.CaseNoise(n=3, rate=1.0, modes=["upper"])}
    summary = AugmentSummary(output=tmp_path / "out.jsonl")
    out = list(augment_records(records, steps, seed=0, keep_seeds=True, summary=summary))
    seeds, variants = out[:4], out[4:]
    assert [r["id"] for r in seeds] == ["s1", "seeds:2", "seeds:3", "seeds:4"]
    assert seeds[0]["label"] == "spam"
    texts = [v["text"] for v in variants]
    # "FREE CASH" is a seed already; "see you" upper-cased is new.
    assert texts == ["SEE YOU"]
    assert summary.n_dropped["duplicate"] == 1 and summary.n_variants == {"case": 1}
    variant = variants[0]
    assert variant["parent"] == "seeds:4" and variant["id"] == "seeds:4~case.1"
    assert variant["method"] == "spacy-distill.CaseNoise.v1"
    assert variant["params"] == {"rate": 1.0, "modes": ["upper"]}
    assert "label" not in variant and "labels" not in variant


def test_augment_file_is_byte_identical_for_a_seed(tmp_path):
    seeds = write_jsonl(
        tmp_path / "seeds.jsonl",
        [{"text": t} for t in ["win free cash now", "see you at lunch", "Привет"]],
    )
    steps = make_noise_augmenters()
    augment_file(seeds, tmp_path / "a.jsonl", steps, seed=7, show_progress=False)
    augment_file(seeds, tmp_path / "b.jsonl", make_noise_augmenters(), seed=7, show_progress=False)
    augment_file(seeds, tmp_path / "c.jsonl", make_noise_augmenters(), seed=8, show_progress=False)
    a = (tmp_path / "a.jsonl").read_bytes()
    assert a == (tmp_path / "b.jsonl").read_bytes() != (tmp_path / "c.jsonl").read_bytes()
    # A seed's variants do not depend on the other seeds in the file.
    augment_file(
        seeds, tmp_path / "d.jsonl", make_noise_augmenters(), seed=7, limit=1, show_progress=False
    )
    first = [
        json.loads(line)
        for line in a.decode().splitlines()
        if json.loads(line)["parent"] == "seeds:1"
    ]
    assert first == [json.loads(line) for line in (tmp_path / "d.jsonl").read_text().splitlines()]


def test_cli_writes_variants(tmp_path, spam_jsonl):
    cfg = Path(__file__).parent.parent / "examples" / "augment" / "noise_and_obfuscation.cfg"
    out = tmp_path / "aug.jsonl"
    result = CliRunner().invoke(
        app,
        [
            "augment",
            str(spam_jsonl),
            str(out),
            "--config",
            str(cfg),
            "--seed",
            "1",
            "--no-progress",
            "--augment.steps.leet.rate",
            "1.0",
        ],
    )
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in out.read_text(encoding="utf8").splitlines()]
    assert sum("parent" not in r for r in rows) == 8  # keep_seeds = true
    leet = [r for r in rows if r.get("method") == "spacy-distill.Leetspeak.v1"]
    assert leet and all(r["params"]["rate"] == 1.0 for r in leet)
    assert "Wrote" in result.output


def test_leakage_guard_at_augment_annotate_and_training(tmp_path):
    from spacy_distill.annotation.annotate import annotate
    from spacy_distill.training.corpus import TargetCorpus

    train = write_jsonl(
        tmp_path / "train.jsonl", [{"text": "win free cash"}, {"text": "see you at lunch"}]
    )
    dev = write_jsonl(
        tmp_path / "dev.jsonl",
        [{"text": "claim your prize", "label": "spam"}, {"text": "See you  at LUNCH"}],
    )
    steps = {"leet": obfuscation.Leetspeak(rate=1.0)}
    # augment: a seed that is an evaluation text is refused, named by file and line.
    with pytest.raises(LeakageError, match=r"train.jsonl:2 .*dev.jsonl:2"):
        augment_file(train, tmp_path / "aug.jsonl", steps, eval_data=[dev], show_progress=False)
    # A train set made (wrongly) from dev: annotate and training refuse it.
    augment_file(dev, tmp_path / "leaky.jsonl", steps, keep_seeds=True, show_progress=False)
    with pytest.raises(LeakageError) as err:
        annotate(
            tmp_path / "leaky.jsonl",
            tmp_path / "leaky.spacy",
            FakeTeacher(),
            eval_data=[dev],
            show_progress=False,
        )
    message = str(err.value)
    assert "2 augmented text(s)" in message and "'dev:1'" in message and "dev.jsonl:1" in message
    assert "leaky.jsonl:3 (id 'dev:1~leet.1')" in message
    annotate(tmp_path / "leaky.jsonl", tmp_path / "leaky.spacy", FakeTeacher(), show_progress=False)
    from spacy_distill.annotation.annotate import convert

    convert(dev, tmp_path / "dev.spacy", labels=["ham", "spam"], exclusive=True, on_error="skip")
    nlp = spacy.blank("en")
    corpus = registry.readers.get("spacy-distill.TargetCorpus.v1")(
        path=tmp_path / "leaky.spacy", eval_paths=[tmp_path / "dev.spacy", None]
    )
    with pytest.raises(LeakageError, match=r"leaky.spacy: doc 2 .*its parent 'dev:1'"):
        next(iter(corpus(nlp)))
    # Variants of train records pass.
    augment_file(train, tmp_path / "clean.jsonl", steps, show_progress=False)
    annotate(
        tmp_path / "clean.jsonl",
        tmp_path / "clean.spacy",
        FakeTeacher(),
        eval_data=[dev],
        show_progress=False,
    )
    assert (
        len(list(TargetCorpus(tmp_path / "clean.spacy", eval_paths=[tmp_path / "dev.spacy"])(nlp)))
        == 2
    )


def test_provenance_survives_augment_annotate_docbin_training(tmp_path, spam_jsonl):
    from spacy_distill.data.targets import get_target

    steps = {
        "leet": obfuscation.Leetspeak(n=2, rate=0.6),
        "split": obfuscation.SplitLetters(rate=0.5, separators=[" ", "."]),
    }
    augment_file(
        spam_jsonl, tmp_path / "aug.jsonl", steps, seed=5, keep_seeds=True, show_progress=False
    )
    rows = [
        json.loads(line)
        for line in (tmp_path / "aug.jsonl").read_text(encoding="utf8").splitlines()
    ]
    result = CliRunner().invoke(
        app,
        [
            "annotate",
            str(tmp_path / "aug.jsonl"),
            str(tmp_path / "aug.spacy"),
            "--teacher",
            str(_fake_teacher_cfg(tmp_path)),
            "--no-cache",
            "--no-progress",
            "--eval-data",
            str(spam_jsonl),
        ],
    )
    # The seeds are in the "evaluation" set, but only variants are checked, and their parents
    # are train ids: r0.. are in spam.jsonl, so this must fail.
    assert result.exit_code == 1 and "overlap the evaluation set" in result.output
    result = CliRunner().invoke(
        app,
        [
            "annotate",
            str(tmp_path / "aug.jsonl"),
            str(tmp_path / "aug.spacy"),
            "--teacher",
            str(_fake_teacher_cfg(tmp_path)),
            "--no-cache",
            "--no-progress",
        ],
    )
    assert result.exit_code == 0, result.output
    nlp = spacy.blank("en")
    reader = registry.readers.get("spacy-distill.TargetCorpus.v1")(path=tmp_path / "aug.spacy")
    examples = list(reader(nlp))
    assert len(examples) == len(rows)
    by_id = {}
    for eg in examples:
        target = get_target(eg.reference)
        by_id[target.provenance.id] = (eg, target)
    for row in rows:
        eg, target = by_id[row["id"]]
        assert eg.reference.text == row["text"]
        assert target.has_teacher
        if "parent" in row:
            assert target.provenance.parent == row["parent"]
            assert target.provenance.method == row["method"]
            assert json.loads(json.dumps(target.provenance.params)) == row["params"]
            assert not eg.reference.cats  # a variant never inherits its parent's label
        else:
            assert target.provenance.parent is None and eg.reference.cats


def _fake_teacher_cfg(tmp_path):
    path = tmp_path / "teacher.cfg"
    path.write_text('[teacher]\n@teachers = "spacy-distill-test.FakeTeacher.v1"\n', encoding="utf8")
    return path


def test_records_read_augmentation_fields(tmp_path):
    path = write_jsonl(
        tmp_path / "x.jsonl",
        [
            {"text": "a", "parent": "p", "method": "m", "params": {"rate": 0.1}},
            {"text": "b", "params": [1]},
        ],
    )
    good, bad = list(read_records(path))
    assert (good.parent, good.method, good.params, good.key) == ("p", "m", {"rate": 0.1}, "x:1")
    assert "x.jsonl:2: field 'params'" in str(bad)
    csv = tmp_path / "x.csv"
    csv.write_text('text,parent,method,params\nhello,p1,m1,"{""rate"": 0.5}"\n', encoding="utf8")
    (record,) = list(read_records(csv))
    assert (record.parent, record.method, record.params) == ("p1", "m1", {"rate": 0.5})


def test_eval_paths_from_an_interpolated_training_config(tmp_path):
    from confection import Config

    config = Config().from_str(
        '[paths]\ntrain = "t.spacy"\ndev = "corpus/dev.spacy"\ntest = null\n\n[corpora]\n\n[corpora.train]\n'
        '@readers = "spacy-distill.TargetCorpus.v1"\npath = ${paths.train}\n'
        'eval_paths = ["${paths.dev}", "${paths.test}"]\n'
    )
    corpus = registry.resolve(config["corpora"])["train"]
    assert corpus.eval_paths == [Path("corpus/dev.spacy")]


def test_augment_drops_variants_that_are_evaluation_texts(tmp_path):
    from spacy_distill.annotation.annotate import annotate

    class DropLastWord(base.Augmenter):
        method = "test.DropLastWord.v1"

        def transform(self, text, rng):
            return " ".join(text.split()[:-1])

    # "see you soon" without its last word is "See  you", a dev text (case and spacing aside):
    # dropped, not written.
    train = write_jsonl(
        tmp_path / "train.jsonl", [{"text": "see you soon"}, {"text": "free cash now"}]
    )
    dev = write_jsonl(
        tmp_path / "dev.jsonl", [{"text": "See  you", "label": "ham"}, {"text": "other"}]
    )
    steps = {"drop": DropLastWord()}
    summary = augment_file(
        train, tmp_path / "aug.jsonl", steps, eval_data=[dev], show_progress=False
    )
    rows = [
        json.loads(line)
        for line in (tmp_path / "aug.jsonl").read_text(encoding="utf8").splitlines()
    ]
    assert [r["text"] for r in rows] == ["free cash"]
    assert summary.n_dropped["evaluation"] == 1
    # So annotate's leakage check passes on the output.
    annotate(
        tmp_path / "aug.jsonl",
        tmp_path / "aug.spacy",
        FakeTeacher(),
        eval_data=[dev],
        show_progress=False,
    )
    # Without --eval-data the variant is written, and annotate refuses it.
    augment_file(train, tmp_path / "leaky.jsonl", steps, show_progress=False)
    with pytest.raises(LeakageError, match="dev.jsonl:1"):
        annotate(
            tmp_path / "leaky.jsonl",
            tmp_path / "leaky.spacy",
            FakeTeacher(),
            eval_data=[dev],
            show_progress=False,
        )
