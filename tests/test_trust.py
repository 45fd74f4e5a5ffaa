"""Trust in the teacher per label: its dev quality from stored outputs, and a student that a
blind teacher no longer drags below gold."""

import numpy
import pytest
from spacy import util

from spacy_distill.data.targets import write_targets
from spacy_distill.evaluation.trust import label_trust, teacher_quality, weak_labels
from spacy_distill.training.student_config import make_student_config

from .conftest import SPAM_TEXTS, make_target_docs, train_config_in_process


def _blind_teacher_rows(repeat=4):
    """The teacher says ham for everything (it never predicts spam); gold is right."""
    return [
        (text, [0.9, 0.1], {"ham": float(label == "ham"), "spam": float(label == "spam")})
        for text, label in SPAM_TEXTS * repeat
    ]


def test_teacher_quality_from_stored_outputs(tmp_path):
    path = write_targets(make_target_docs(_blind_teacher_rows(1)), tmp_path / "dev.spacy")
    quality = teacher_quality(path)
    n_spam = sum(label == "spam" for _, label in SPAM_TEXTS)
    assert quality["n"] == len(SPAM_TEXTS)
    assert quality["per_label"]["spam"] == {
        "precision": 0.0,
        "recall": 0.0,
        "f1": 0.0,
        "support": n_spam,
        "predicted": 0,
    }
    assert quality["per_label"]["ham"]["recall"] == 1.0
    assert quality["accuracy"] == pytest.approx(1 - n_spam / len(SPAM_TEXTS))
    assert weak_labels(quality) == ["spam"]
    assert label_trust(quality)["spam"] == 0.0 and 0 < label_trust(quality)["ham"] < 1


def _train(train_path, loss, steps=25):
    config = make_student_config(train_path, arch="bow", max_steps=steps)
    name = config["nlp"]["pipeline"][-1]
    config["components"][name]["loss"] = loss
    util.fix_random_seed(0)
    return train_config_in_process(config, train_path, steps)[0]


def test_a_student_that_distrusts_a_blind_teacher_learns_the_class_it_cannot_see(tmp_path):
    train = write_targets(make_target_docs(_blind_teacher_rows()), tmp_path / "train.spacy")
    trust = label_trust(teacher_quality(train))
    v1 = _train(
        train, {"@losses": "spacy-distill.SoftTargetLoss.v1", "temperature": 2.0, "alpha": 0.9}
    )
    v2 = _train(
        train,
        {
            "@losses": "spacy-distill.SoftTargetLoss.v2",
            "temperature": 2.0,
            "alpha": 0.9,
            "label_trust": trust,
        },
    )
    spam = [text for text, label in SPAM_TEXTS if label == "spam"]
    p_v1 = numpy.mean([doc.cats["spam"] for doc in v1.pipe(spam)])
    p_v2 = numpy.mean([doc.cats["spam"] for doc in v2.pipe(spam)])
    # The blind teacher holds v1 back on spam; trusting it only where it sees, v2 learns spam.
    assert p_v2 > 0.5 > p_v1


def test_check_teacher_cli_reports_and_warns(tmp_path):
    import json

    from typer.testing import CliRunner

    from spacy_distill.cli import app

    path = write_targets(make_target_docs(_blind_teacher_rows(1)), tmp_path / "dev.spacy")
    runner = CliRunner()
    result = runner.invoke(app, ["check-teacher", str(path), "-o", str(tmp_path / "q.json")])
    assert result.exit_code == 0, result.stdout
    assert "The teacher is weak on ['spam']" in " ".join(result.stdout.split())
    assert json.loads((tmp_path / "q.json").read_text())["label_trust"]["spam"] == 0.0
    assert runner.invoke(app, ["check-teacher", str(path), "--strict"]).exit_code == 1


def test_init_config_label_trust_auto_and_from_a_check_teacher_report(tmp_path):
    import json

    from typer.testing import CliRunner

    from spacy_distill.cli import app
    from spacy_distill.errors import DistillError

    train = write_targets(make_target_docs(_blind_teacher_rows()), tmp_path / "train.spacy")
    dev = write_targets(make_target_docs(_blind_teacher_rows(1)), tmp_path / "dev.spacy")
    expected = label_trust(teacher_quality(dev))
    config = make_student_config(train, dev, arch="bow", label_trust="auto")
    loss = config["components"]["textcat"]["loss"]
    assert loss["@losses"] == "spacy-distill.SoftTargetLoss.v2"
    assert dict(loss["label_trust"]) == expected and expected["spam"] == 0.0
    # the config trains as written: the trust reaches the loss
    nlp = util.load_model_from_config(config, auto_fill=True)
    assert nlp.get_pipe("textcat").loss.label_trust == expected
    runner = CliRunner()
    report = tmp_path / "check.json"
    assert runner.invoke(app, ["check-teacher", str(dev), "-o", str(report)]).exit_code == 0
    result = runner.invoke(
        app,
        [
            "init-config",
            "-",
            "--train",
            str(train),
            "--dev",
            str(dev),
            "--arch",
            "bow",
            "--label-trust",
            str(report),
        ],
    )
    assert result.exit_code == 0, result.output
    from thinc.api import Config

    written = Config().from_str(result.stdout)["components"]["textcat"]["loss"]["label_trust"]
    assert dict(written) == pytest.approx(expected)
    assert "Teacher trust per label" in result.output
    # bad input names what is wrong
    with pytest.raises(DistillError, match="neither 'auto' nor a file"):
        make_student_config(train, dev, label_trust=str(tmp_path / "missing.json"))
    with pytest.raises(DistillError, match="does not have: \\['fraud'\\]"):
        make_student_config(train, dev, label_trust={"fraud": 0.5})
    with pytest.raises(DistillError, match="number in \\[0, 1\\]"):
        make_student_config(train, dev, label_trust={"spam": 1.5})
    (tmp_path / "other.json").write_text(json.dumps({"per_label": {}}))
    with pytest.raises(DistillError, match="no 'label_trust' object"):
        make_student_config(train, dev, label_trust=tmp_path / "other.json")
    with pytest.raises(DistillError, match="not for factory 'textcat'"):
        make_student_config(train, dev, factory="textcat", label_trust="auto")
