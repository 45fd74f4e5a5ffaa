"""`spacy-distill export`: plain spaCy components with the same predictions, the filter, the card."""

import json

import numpy
import pytest
import spacy
from spacy.cli.package import get_third_party_dependencies
from spacy.language import Language
from typer.testing import CliRunner

from spacy_distill.cli import app
from spacy_distill.errors import DistillError
from spacy_distill.evaluation.evaluate import evaluate
from spacy_distill.packaging import export as export_module
from spacy_distill.packaging.export import export_pipeline

from .conftest import train_distilled_student
from .test_semantic_filter import TEXTS


class TrainingOnly:
    """Stands in for a training-only component (hidden-state distillation)."""

    is_training_only = True

    def __call__(self, doc):
        return doc


@Language.factory("spacy_distill_test_training_only")
def make_training_only(nlp, name):
    return TrainingOnly()


def _cats(nlp, texts):
    labels = sorted({label for doc in nlp.pipe(texts[:1]) for label in doc.cats})
    return numpy.asarray(
        [[doc.cats[label] for label in labels] for doc in nlp.pipe(texts, batch_size=5)]
    )


@pytest.mark.parametrize(
    "arch,exclusive",
    [("bow", True), ("cnn", True), ("ensemble", True), ("bow", False), ("cnn", False)],
)
def test_export_gives_spacy_textcat_with_the_same_predictions(tmp_path, arch, exclusive):
    student = train_distilled_student(tmp_path, arch=arch, exclusive=exclusive)
    result = export_pipeline(student, tmp_path / "exported", check_texts=TEXTS)
    plain = "textcat" if exclusive else "textcat_multilabel"
    assert result["converted"] == {"textcat": plain} and result["max_difference"] <= 1e-6
    trained, exported = spacy.load(student), spacy.load(tmp_path / "exported")
    assert exported.get_pipe_meta("textcat").factory == plain
    assert type(exported.get_pipe("textcat")).__module__.startswith("spacy.pipeline")
    assert numpy.abs(_cats(trained, TEXTS) - _cats(exported, TEXTS)).max() <= 1e-6
    config = exported.config
    assert "loss" not in config["components"]["textcat"]
    assert config["corpora"]["train"]["@readers"] == "spacy.Corpus.v1"
    # only the empty-doc guard ties the exported pipeline to the plugin, and only as a light dependency
    assert [r.split(">")[0] for r in get_third_party_dependencies(config)] == ["spacy-distill"]
    assert config["nlp"]["after_pipeline_creation"] == {
        "@callbacks": "spacy-distill.guard_empty_docs.v1"
    }


def test_training_only_components_are_removed(tmp_path):
    student = train_distilled_student(tmp_path)
    nlp = spacy.load(student)
    nlp.add_pipe("spacy_distill_test_training_only", first=True)
    nlp.to_disk(tmp_path / "with_extra")
    result = export_pipeline(tmp_path / "with_extra", tmp_path / "exported")
    assert result["removed"] == ["spacy_distill_test_training_only"]
    assert spacy.load(tmp_path / "exported").pipe_names == ["textcat"]


def test_filter_carries_tuned_thresholds_and_band(tmp_path):
    meta = {"spacy_distill": {"thresholds": {"spam": 0.4}, "cascade": {"margin": 0.05}}}
    student = train_distilled_student(tmp_path, meta=meta)
    export_pipeline(student, tmp_path / "exported", add_filter=True, actions={"spam": "block"})
    nlp = spacy.load(tmp_path / "exported")
    assert nlp.pipe_names == ["textcat", "semantic_filter"]
    block = nlp.config["components"]["semantic_filter"]
    assert block["thresholds"] == {"spam": 0.4} and block["escalation_margin"] == 0.05
    assert block["actions"] == {"spam": "block"} and block["teacher"] is None
    verdicts = {doc._.verdict for doc in nlp.pipe(TEXTS)}
    assert verdicts <= {"allow", "block", "review"} and len(verdicts) >= 2
    # exporting the export again keeps one filter
    export_pipeline(
        tmp_path / "exported", tmp_path / "again", add_filter=True, actions={"spam": "review"}
    )
    again = spacy.load(tmp_path / "again")
    assert again.pipe_names == ["textcat", "semantic_filter"]
    assert again.config["components"]["semantic_filter"]["actions"] == {"spam": "review"}


def test_card_records_teacher_loss_data_and_evaluation(tmp_path):
    student = train_distilled_student(tmp_path)
    report = evaluate(
        student,
        tmp_path / "train.spacy",
        tmp_path / "metrics",
        measure_cost=False,
        plots=False,
        show_progress=False,
    )
    result = export_pipeline(
        student,
        tmp_path / "exported",
        report=tmp_path / "metrics" / "report.json",
        train_data=tmp_path / "train.spacy",
        name="toy_filter",
        version="1.2.3",
        license="CC BY 4.0 (toy data)",
    )
    assert result["warnings"] == []
    meta = json.loads((tmp_path / "exported" / "meta.json").read_text())
    assert meta["license"] == "CC BY 4.0 (toy data)"
    card = meta["spacy_distill"]["card"]
    assert meta["name"] == "toy_filter" and meta["version"] == "1.2.3"
    assert card["teacher"] == [{"id": "toy", "fingerprint": "0" * 8}]
    assert card["loss"]["temperature"] == 2.0 and card["loss"]["alpha"] == 0.5
    assert (
        card["data"]["train"]["n_docs"] == 24 and card["student"]["trained_as"] == "distill_textcat"
    )
    assert card["evaluation"]["retention"] == pytest.approx(report["retention"])
    assert card["evaluation"]["student"]["accuracy"] == pytest.approx(
        report["quality"]["student"]["accuracy"]
    )
    assert "distilled from toy" in meta["description"]


def test_nothing_is_written_when_predictions_differ(tmp_path, monkeypatch):
    student = train_distilled_student(tmp_path)
    monkeypatch.setattr(export_module, "EQUIVALENCE_TOLERANCE", -1.0)
    with pytest.raises(DistillError, match="nothing was written"):
        export_pipeline(student, tmp_path / "exported")
    assert not (tmp_path / "exported").exists()


def test_bad_inputs_are_named(tmp_path):
    student = train_distilled_student(tmp_path)
    with pytest.raises(DistillError, match="missing.json"):
        export_pipeline(student, tmp_path / "out", report=tmp_path / "missing.json")
    with pytest.raises(DistillError, match="eggs"):
        export_pipeline(
            student, tmp_path / "out", add_filter=True, actions={"eggs": "block"}, check_texts=["x"]
        )
    with pytest.raises(DistillError, match="nowhere"):
        export_pipeline(tmp_path / "nowhere", tmp_path / "out")


def test_cli_exports_with_filter_and_rejects_bad_actions(tmp_path):
    student = train_distilled_student(tmp_path)
    data = tmp_path / "check.jsonl"
    data.write_text("".join(json.dumps({"text": t}) + "\n" for t in TEXTS if t), encoding="utf8")
    runner = CliRunner()
    result = runner.invoke(
        app,
        [
            "export",
            str(student),
            str(tmp_path / "exported"),
            "--filter",
            "--action",
            "spam=block",
            "--check-data",
            str(data),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "Predictions of 17 texts" in result.output
    assert "states no licence" in result.output  # none given, none in the trained meta
    assert spacy.load(tmp_path / "exported").pipe_names == ["textcat", "semantic_filter"]
    bad = runner.invoke(
        app, ["export", str(student), str(tmp_path / "bad"), "--filter", "--action", "spam"]
    )
    assert bad.exit_code == 1 and "LABEL=ACTION" in bad.output
    assert not (tmp_path / "bad").exists()


def test_exported_filter_works_with_several_processes(tmp_path):
    student = train_distilled_student(
        tmp_path, meta={"spacy_distill": {"thresholds": {"spam": 0.45}}}
    )
    export_pipeline(student, tmp_path / "exported", add_filter=True, actions={"spam": "block"})
    nlp = spacy.load(tmp_path / "exported")
    texts = TEXTS * 4
    one = [
        (doc.cats, doc._.verdict, doc._.verdict_details) for doc in nlp.pipe(texts, batch_size=8)
    ]
    two = [
        (doc.cats, doc._.verdict, doc._.verdict_details)
        for doc in nlp.pipe(texts, batch_size=8, n_process=2)
    ]
    assert [v for _, v, _ in two] == [v for _, v, _ in one]
    assert all(
        a[0] == pytest.approx(b[0]) and a[2]["margin"] == pytest.approx(b[2]["margin"])
        for a, b in zip(one, two)
    )


def test_tok2vec_shared_with_a_non_classifier_is_kept():
    listener = {"@architectures": "spacy.Tok2VecListener.v1", "width": 96, "upstream": "tok2vec"}
    nlp = spacy.blank("en")
    nlp.add_pipe("tok2vec")
    nlp.add_pipe(
        "tagger", config={"model": {"@architectures": "spacy.Tagger.v2", "tok2vec": listener}}
    )
    nlp.add_pipe(
        "textcat",
        config={
            "model": {
                "@architectures": "spacy.TextCatReduce.v1",
                "tok2vec": listener,
                "exclusive_classes": True,
                "use_reduce_first": False,
                "use_reduce_last": False,
                "use_reduce_max": False,
                "use_reduce_mean": True,
            }
        },
    )
    nlp.get_pipe("tagger").add_label("N")
    nlp.get_pipe("textcat").add_label("A")
    nlp.get_pipe("textcat").add_label("B")
    nlp.initialize()
    before = nlp("a b c").cats
    assert export_module.inline_tok2vec(nlp) == []
    assert nlp.pipe_names == ["tok2vec", "tagger", "textcat"]
    nlp.remove_pipe("tagger")
    assert export_module.inline_tok2vec(nlp) == ["tok2vec"]
    assert nlp.pipe_names == ["textcat"]
    assert nlp("a b c").cats == pytest.approx(before, abs=1e-6)
