import json
import re
import subprocess
import sys

import numpy
import pytest
import spacy
from spacy.cli.train import train as spacy_train
from typer.testing import CliRunner

from spacy_distill.cli import app
from spacy_distill.data.targets import get_target, read_target_summary, read_targets

from .conftest import SPAM_TEXTS, write_jsonl
from .conftest import invoke_cli as invoke


def test_annotate_with_spacy_pipeline_teacher(tmp_path, spam_jsonl, spacy_teacher_path):
    out = tmp_path / "targets.spacy"
    result, output = invoke(
        "annotate", spam_jsonl, out, "--teacher", spacy_teacher_path, "--no-progress"
    )
    assert result.exit_code == 0, output
    docs = list(read_targets(out))
    assert [d.text for d in docs] == [t for t, _ in SPAM_TEXTS]
    target = get_target(docs[0])
    assert len(target.fingerprint) == 64
    # spaCy's default name: the id carries the start of the fingerprint, so teachers differ
    assert target.teacher_id == f"spacy:en_pipeline-0.0.0/textcat@{target.fingerprint[:8]}"
    assert (
        target.provenance.source == str(spam_jsonl)
        and target.provenance.line == 1
        and target.provenance.id == "r0"
    )
    assert docs[0].cats == {"ham": 0.0, "spam": 1.0}
    teacher_nlp = spacy.load(spacy_teacher_path)
    numpy.testing.assert_allclose(
        target.probabilities()[1], teacher_nlp(docs[0].text).cats["spam"], atol=1e-5
    )


def test_annotate_with_teacher_config_and_overrides(tmp_path, spam_jsonl, fake_teacher_cfg):
    out = tmp_path / "targets.spacy"
    result, output = invoke(
        "annotate", spam_jsonl, out, "--teacher", fake_teacher_cfg, "--no-progress", "--limit", 5
    )
    assert result.exit_code == 0, output
    assert read_target_summary(out)["n_docs"] == 5
    assert "Wrote 5 docs" in output


def test_bad_lines_fail_before_the_teacher_runs_or_are_skipped_and_reported(
    tmp_path, fake_teacher_cfg
):
    path = tmp_path / "in.jsonl"
    path.write_text(
        '{"text": "free cash", "label": "spam"}\n'
        '{"text": broken\n'
        '{"text": ""}\n'
        '{"text": "hi", "label": "eggs"}\n'
        '{"text": "ok", "label": "ham"}\n'
    )
    out = tmp_path / "out.spacy"
    result, output = invoke("annotate", path, out, "--teacher", fake_teacher_cfg, "--no-progress")
    assert result.exit_code == 1
    assert f"{path}:2: invalid JSON" in output and "--on-error skip" in output
    assert not out.exists()
    result, output = invoke(
        "annotate", path, out, "--teacher", fake_teacher_cfg, "--no-progress", "--on-error", "skip"
    )
    assert result.exit_code == 0, output
    assert f"{path}:2: invalid JSON" in output
    assert f"{path}:3: field 'text': empty text" in output
    assert f"{path}:4: field 'label': unknown label(s) ['eggs']" in output
    assert "Skipped 3 bad record(s)" in output
    assert [d.text for d in read_targets(out)] == ["free cash", "ok"]


def test_nan_teacher_output_is_reported_and_work_done_is_kept(tmp_path, fake_teacher_cfg):
    rows = [{"text": f"free text {i}"} for i in range(7)] + [{"text": "poison pill"}]
    path = write_jsonl(tmp_path / "in.jsonl", rows)
    out = tmp_path / "out.spacy"
    result, output = invoke(
        "annotate",
        path,
        out,
        "--teacher",
        fake_teacher_cfg,
        "--teacher.nan_on",
        "poison",
        "--no-progress",
    )
    assert result.exit_code != 0
    assert f"{path}:8: the teacher returned NaN" in output
    partial = tmp_path / "out.partial.spacy"
    assert f"Stopped after 7 docs; they are saved in {partial}" in output
    assert not out.exists() and len(list(read_targets(partial))) == 7
    result, output = invoke(
        "annotate",
        path,
        out,
        "--teacher",
        fake_teacher_cfg,
        "--teacher.nan_on",
        "poison",
        "--no-progress",
        "--on-error",
        "skip",
    )
    assert result.exit_code == 0 and len(list(read_targets(out))) == 7


def test_label_sets_that_do_not_match(tmp_path, spam_jsonl):
    cfg = tmp_path / "t.cfg"
    cfg.write_text(
        '[teacher]\n@teachers = "spacy-distill-test.FakeTeacher.v1"\nlabels = ["neg", "pos"]\n'
    )
    result, output = invoke(
        "annotate", spam_jsonl, tmp_path / "o.spacy", "--teacher", cfg, "--no-progress"
    )
    assert result.exit_code == 1
    assert (
        f"{spam_jsonl}:1: field 'label': unknown label(s) ['spam']; the labels are ['neg', 'pos']"
        in output
    )


def test_convert_and_init_config_then_spacy_train_and_load(tmp_path, spam_jsonl, fake_teacher_cfg):
    gold = tmp_path / "gold.spacy"
    result, output = invoke("convert", spam_jsonl, gold)
    assert result.exit_code == 0, output
    summary = read_target_summary(gold)
    assert (
        summary["labels"] == ["ham", "spam"]
        and summary["n_teacher"] == 0
        and summary["n_gold"] == 8
    )
    unlabelled = write_jsonl(tmp_path / "unlabelled.jsonl", [{"text": t} for t, _ in SPAM_TEXTS])
    targets = tmp_path / "targets.spacy"
    assert (
        invoke("annotate", unlabelled, targets, "--teacher", fake_teacher_cfg, "--no-progress")[
            0
        ].exit_code
        == 0
    )
    for arch in ("bow", "cnn", "ensemble"):
        cfg = tmp_path / f"{arch}.cfg"
        result, output = invoke(
            "init-config",
            cfg,
            "--train",
            targets,
            "--dev",
            gold,
            "--arch",
            arch,
            "-T",
            3,
            "--alpha",
            0.7,
            "--max-steps",
            20,
        )
        assert result.exit_code == 0, output
        debug = subprocess.run(
            [sys.executable, "-m", "spacy", "debug", "config", str(cfg)],
            capture_output=True,
            text=True,
        )
        assert debug.returncode == 0 and "Config is valid" in debug.stdout, (
            debug.stdout + debug.stderr
        )
    config_text = (tmp_path / "bow.cfg").read_text()
    assert 'factory = "distill_textcat"' in config_text and "temperature = 3.0" in config_text
    assert 'labels = ["ham", "spam"]' in config_text
    spacy_train(tmp_path / "bow.cfg", tmp_path / "out", overrides={"training.eval_frequency": 10})
    nlp = spacy.load(tmp_path / "out" / "model-last")
    assert set(nlp("free cash").cats) == {"ham", "spam"}
    meta = json.loads((tmp_path / "out" / "model-last" / "meta.json").read_text())
    assert "cats_teacher_agreement" in meta["performance"]
    # the gold-only baseline: spaCy's own textcat, same architecture
    result, output = invoke(
        "init-config", tmp_path / "base.cfg", "--train", gold, "--factory", "textcat"
    )
    assert result.exit_code == 0, output
    assert 'factory = "textcat"' in (tmp_path / "base.cfg").read_text()
    result, output = invoke(
        "init-config", tmp_path / "x.cfg", "--train", targets, "--factory", "textcat"
    )
    assert result.exit_code == 1 and "no doc has gold labels" in output


def test_init_config_selects_on_teacher_agreement_without_gold_dev(tmp_path, fake_teacher_cfg):
    unlabelled = write_jsonl(tmp_path / "u.jsonl", [{"text": t} for t, _ in SPAM_TEXTS])
    targets = tmp_path / "t.spacy"
    invoke("annotate", unlabelled, targets, "--teacher", fake_teacher_cfg, "--no-progress")
    result, output = invoke("init-config", "-", "--train", targets)
    assert result.exit_code == 0
    assert "cats_teacher_agreement = 1.0" in output and "cats_score = 0.0" in output


def test_module_entry_point_runs():
    result = subprocess.run(
        [sys.executable, "-m", "spacy_distill", "--help"], capture_output=True, text=True
    )
    assert result.returncode == 0 and "annotate" in result.stdout and "init-config" in result.stdout


def test_every_command_help_keeps_its_bracketed_words():
    """Help texts are plain text: `[teacher]`, `spacy-distill[ray]` and the like must survive
    (Rich markup used to swallow them)."""
    import typer.main

    group = typer.main.get_command(app)
    runner = CliRunner()
    checked = 0
    for name, command in group.commands.items():
        result = runner.invoke(app, [name, "--help"], terminal_width=200)
        assert result.exit_code == 0, (name, result.output)
        shown = " ".join(result.output.split())
        texts = [command.help or ""] + [getattr(p, "help", None) or "" for p in command.params]
        for text in texts:
            for bracketed in re.findall(r"\S*\[[^\]\s]+\]\S*", text):
                assert bracketed in shown, f"`{name} --help` lost {bracketed!r}"
                checked += 1
    assert checked >= 3  # annotate's [teacher] block, spacy-distill[ray], augment's...


def test_convert_takes_one_label_set_from_all_splits(tmp_path):
    """A class the dev split lacks keeps its column: every split gets the labels of all three."""
    train = write_jsonl(
        tmp_path / "train.jsonl",
        [
            {"text": "free prize", "label": "spam"},
            {"text": "hi mum", "label": "ham"},
            {"text": "you idiot", "label": "abuse"},
        ],
    )
    dev = write_jsonl(
        tmp_path / "dev.jsonl",
        [{"text": "win cash", "label": "spam"}, {"text": "see you", "label": "ham"}],
    )
    alone, _ = invoke("convert", dev, tmp_path / "alone.spacy")
    assert alone.exit_code == 0
    assert read_target_summary(tmp_path / "alone.spacy")["labels"] == ["ham", "spam"]
    result, output = invoke(
        "convert", dev, tmp_path / "dev.spacy", "--labels-from", train, "--labels-from", dev
    )
    assert result.exit_code == 0, output
    summary = read_target_summary(tmp_path / "dev.spacy")
    assert summary["labels"] == ["abuse", "ham", "spam"] and summary["exclusive"]
    result, output = invoke(
        "convert", dev, tmp_path / "x.spacy", "--labels-from", train, "--labels", "ham,spam"
    )
    assert result.exit_code == 1 and "either --labels or --labels-from" in output


def test_filter_actions_may_be_comma_separated_or_empty():
    from spacy_distill.cli.export import parse_actions
    from spacy_distill.errors import DistillError

    assert parse_actions(["spam=block,fraud=review", "abuse=flag"]) == {
        "spam": "block",
        "fraud": "review",
        "abuse": "flag",
    }
    assert parse_actions([""]) == {} and parse_actions([]) == {}
    with pytest.raises(DistillError, match="'fraud': expected LABEL=ACTION"):
        parse_actions(["spam=block,fraud"])


def test_messages_that_name_the_file_and_the_fix(tmp_path, spam_jsonl):
    # records given where a target file is expected: annotate/convert, not spaCy v2's convert
    result, output = invoke("init-config", "-", "--train", spam_jsonl)
    assert result.exit_code == 1
    assert (
        f"{spam_jsonl}: input records, not a target file" in output
        and "spacy-distill convert" in output
    )
    assert "spacy convert file.json" not in output
    # gold-only targets: the distilling student is written, with a warning that it has no teacher
    gold = tmp_path / "gold.spacy"
    assert invoke("convert", spam_jsonl, gold)[0].exit_code == 0
    result, output = invoke("init-config", tmp_path / "student.cfg", "--train", gold)
    assert (
        result.exit_code == 0
        and "no doc has teacher targets" in output
        and "--factory textcat" in output
    )
    # a line cut short: the column is on that line
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        '{"text": "ok", "label": "ham"}\n{"text": "cut short", "label": "spam"\n', encoding="utf8"
    )
    result, output = invoke("convert", bad, tmp_path / "bad.spacy", "--labels", "ham,spam")
    assert result.exit_code == 1 and "bad.jsonl:2: invalid JSON" in output
    assert "column 1)" not in output and "column 38)" in output  # the end of its own line
    # a teacher pipeline without a text classifier: its path and what to do
    nlp = spacy.blank("en")
    nlp.add_pipe("sentencizer")
    nlp.to_disk(tmp_path / "no_textcat")
    result, output = invoke(
        "annotate", spam_jsonl, tmp_path / "out.spacy", "--teacher", tmp_path / "no_textcat"
    )
    assert result.exit_code == 1
    assert (
        f"teacher {tmp_path / 'no_textcat'}: The pipeline has no text classifier" in output
        and "sentencizer" in output
    )


TORCH_THREADS_PROBE = """
import os, sys
from spacy_distill.cli import app
try:
    app(sys.argv[1:], standalone_mode=False)
except SystemExit:
    pass
import torch
print(torch.get_num_threads(), os.environ.get("OMP_NUM_THREADS"))
"""


def test_torch_threads_option_limits_torch_and_its_children():
    pytest.importorskip("torch")
    from spacy_distill.threads import torch_thread_environment

    assert (
        torch_thread_environment(0) == {} and torch_thread_environment(2)["OMP_NUM_THREADS"] == "2"
    )
    with pytest.raises(ValueError, match="threads=-1"):
        torch_thread_environment(-1)
    env = {
        k: v
        for k, v in __import__("os").environ.items()
        if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")
    }
    run = subprocess.run(
        [sys.executable, "-c", TORCH_THREADS_PROBE, "--torch-threads", "1", "merge", "--help"],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.split()[-2:] == ["1", "1"]
    result = CliRunner().invoke(app, ["--torch-threads", "-1", "merge", "--help"])
    assert result.exit_code == 2 and "--torch-threads" in result.output


def test_long_steps_show_progress_and_teacher_steps_limit_torch_threads(tmp_path):
    """The first hour: spaCy's progress bar in the student and sample teacher configs, and every
    project step that runs a teacher passes the project's torch_threads."""
    from pathlib import Path

    import yaml
    from thinc.api import Config

    from spacy_distill.data.targets import write_targets
    from spacy_distill.training.student_config import make_student_config

    from .conftest import make_target_docs, spam_target_rows

    train = write_targets(
        make_target_docs(spam_target_rows(), ("ham", "spam"), True), tmp_path / "train.spacy"
    )
    assert make_student_config(train)["training"]["logger"]["progress_bar"] is True
    projects = Path(__file__).parent.parent / "projects"
    teacher = Config().from_disk(
        projects / "spam_filter" / "configs" / "teacher_trf.cfg", interpolate=False
    )
    assert teacher["training"]["logger"]["progress_bar"] is True
    for project in ("spam_filter", "llm_filter"):
        spec = yaml.safe_load((projects / project / "project.yml").read_text(encoding="utf8"))
        assert spec["vars"]["torch_threads"] == 1
        lines = [line for command in spec["commands"] for line in command["script"]]
        teacher_lines = [
            line
            for line in lines
            if "--teacher training/teacher.cfg" in line or "_teacher.py" in line
        ]
        assert len(teacher_lines) >= 5
        assert all(
            "--torch-threads ${vars.torch_threads}" in " ".join(line.split())
            for line in teacher_lines
        ), project
        # the package needs spaCy alone, and states a licence
        assert any(
            line.split()[:4] == ["python", "-m", "spacy_distill", "package"] for line in lines
        ), project
        assert any(
            "spacy_distill export" in line and '--license "${vars.package_license}"' in line
            for line in lines
        )
        assert spec["vars"]["package_license"]


def test_code_files_that_are_missing_or_broken_are_named(tmp_path, spam_jsonl):
    """--code reaches the library's import_code (which Ray actors call too): it raises, naming
    the file, rather than exiting the process."""
    from spacy_distill.errors import DistillError
    from spacy_distill.teachers.loading import import_code

    broken = tmp_path / "broken.py"
    broken.write_text("raise RuntimeError('no teacher today')\n")
    with pytest.raises(
        DistillError,
        match=r"broken.py: cannot import this code file \(RuntimeError: no teacher today\)",
    ):
        import_code(broken)
    with pytest.raises(DistillError, match="missing.py: code file not found"):
        import_code(tmp_path / "missing.py")
    import_code(None)  # nothing to import
    result, output = invoke(
        "annotate",
        spam_jsonl,
        tmp_path / "out.spacy",
        "--teacher",
        "x.cfg",
        "--code",
        tmp_path / "missing.py",
    )
    assert (
        result.exit_code == 1
        and "--code:" in output
        and "missing.py: code file not found" in output
    )
    assert not (tmp_path / "out.spacy").exists()
