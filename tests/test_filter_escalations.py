"""The escalation log of `semantic_filter` (`record`): only the docs the teacher decided, with
its and the student's probabilities and no secrets; crash-safe appends (SIGKILL, torn lines),
rotation, 0o600; the setting survives to_disk/load and a packaged student; and the log becomes
targets that training reads without a teacher."""

import json
import logging
import os
import pickle
import signal
import stat
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import numpy
import pytest
import spacy

from spacy_distill.annotation.escalations import escalations_to_targets
from spacy_distill.data.targets import get_target, read_targets
from spacy_distill.errors import DistillError
from spacy_distill.filter.escalations import (
    FIELDS,
    EscalationLog,
    escalation_record,
    is_escalation_log,
    mask_secrets,
    read_escalation_lines,
    read_escalations,
    rotated_files,
)

from .conftest import FakeTeacher, invoke_cli, train_config_in_process, train_distilled_student
from .test_packaging import RUN_WITHOUT_PLUGIN

TEXTS = [
    "free cash prize now",
    "see you at lunch",
    "win a free trip",
    "",
    "notes for the meeting",
    "urgent reply needed",
    "claim your prize",
    "are you home",
    "cash back offer",
    "thanks for the notes",
]
SECRET = "sk-abcdef1234567890"
SECRET_ID = f"https://bob:hunter2@api.example.com/v1?api_key={SECRET}&model=big"


class SecretTeacher(FakeTeacher):
    """The fake teacher with an id that holds URL credentials and an API key."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.teacher_id = SECRET_ID


@pytest.fixture(scope="module")
def student(tmp_path_factory) -> Path:
    return train_distilled_student(tmp_path_factory.mktemp("escalations"))


def _margins(nlp):
    """The filter's own margin per text (None for the empty one)."""
    nlp.add_pipe("semantic_filter", name="probe")
    margins = [doc._.verdict_details["margin"] for doc in nlp.pipe(TEXTS)]
    nlp.remove_pipe("probe")
    return margins


def _record(i: int, text: str = None, teacher=(0.3, 0.7), time: str = None, **fields):
    record = escalation_record(
        text=text if text is not None else f"text {i}",
        labels=("ham", "spam"),
        teacher=teacher,
        student=(0.5, 0.5),
        margin=0.01,
        verdict="block",
        exclusive=True,
        component="semantic_filter",
        teacher_id="fake-teacher",
        time=time or "2026-12-03T10:00:00.000+00:00",
    )
    record.update(fields)
    return record


def test_the_log_holds_exactly_the_docs_the_teacher_decided(student, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    nlp = spacy.load(student)
    margins = _margins(nlp)
    band = float(numpy.median([m for m in margins if m is not None]))
    filt = nlp.add_pipe(
        "semantic_filter",
        config={
            "actions": {"spam": "block"},
            "escalation_margin": band,
            "record": "logs/esc.jsonl",
        },
    )
    assert not (tmp_path / "logs").exists()  # opened on the first escalation only
    filt.set_teacher(SecretTeacher())
    docs = list(nlp.pipe(TEXTS, batch_size=4))
    escalated = [doc for doc in docs if doc._.verdict_details["escalated"]]
    assert 0 < len(escalated) < len(docs)
    path = tmp_path / "logs" / "esc.jsonl"
    assert filt.record_path == path and filt.n_recorded == filt.n_escalated == len(escalated)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    content = path.read_text(encoding="utf8")
    assert SECRET not in content and "hunter2" not in content
    records = list(read_escalations(path))
    assert [r["text"] for r in records] == [doc.text for doc in escalated]
    for record, doc in zip(records, escalated):
        details = doc._.verdict_details
        assert set(record) == set(FIELDS) and record["schema"] == 1
        assert record["labels"] == ["ham", "spam"] and record["exclusive"] is True
        assert record["teacher"] == pytest.approx([details["teacher"][x] for x in ("ham", "spam")])
        assert record["student"] == pytest.approx([doc.cats["ham"], doc.cats["spam"]])
        assert record["margin"] == pytest.approx(details["margin"]) and record["margin"] < band
        assert record["verdict"] == doc._.verdict and record["component"] == "semantic_filter"
        assert record["teacher_id"] == mask_secrets(SECRET_ID)
        assert datetime.fromisoformat(record["time"]).utcoffset().total_seconds() == 0
    p_spam = numpy.exp(FakeTeacher().score([records[0]["text"]])[0, 1])
    assert records[0]["teacher"][1] == pytest.approx(p_spam)


def test_teacher_failures_and_student_decisions_are_not_recorded(student, tmp_path):
    nlp = spacy.load(student)
    filt = nlp.add_pipe(
        "semantic_filter", config={"escalation_margin": 1.0, "record": str(tmp_path / "e.jsonl")}
    )
    filt.set_teacher(FakeTeacher(nan_on="free"))
    docs = list(nlp.pipe(TEXTS))
    decided = [d.text for d in docs if d._.verdict_details["decided_by"] == "teacher"]
    failed = [d.text for d in docs if d._.verdict_details["teacher_error"]]
    assert failed == [t for t in TEXTS if "free" in t] and decided
    assert [r["text"] for r in read_escalations(tmp_path / "e.jsonl")] == decided
    assert filt.n_recorded == len(decided) and filt.n_teacher_errors == len(failed)


def test_a_log_that_cannot_be_written_loses_no_verdict(student, tmp_path, caplog):
    nlp = spacy.load(student)
    blocked = tmp_path / "not_a_folder"
    blocked.write_text("a file where the log's folder should be", encoding="utf8")
    filt = nlp.add_pipe(
        "semantic_filter", config={"escalation_margin": 1.0, "record": str(blocked / "e.jsonl")}
    )
    filt.set_teacher(FakeTeacher())
    with caplog.at_level(logging.WARNING):
        docs = list(nlp.pipe(TEXTS))
    decided = [d for d in docs if d._.verdict_details["decided_by"] == "teacher"]
    assert decided and filt.n_escalated == len(decided)
    assert filt.n_recorded == 0 and filt.n_record_errors == len(decided)
    assert "not_a_folder" in caplog.text


def test_the_setting_survives_to_disk_and_load(student, tmp_path):
    nlp = spacy.load(student)
    nlp.add_pipe("semantic_filter", config={"record": "esc.jsonl", "record_max_bytes": 4096})
    nlp.to_disk(tmp_path / "with_log")
    loaded = spacy.load(tmp_path / "with_log").get_pipe("semantic_filter")
    assert loaded.record_path == Path.cwd() / "esc.jsonl" and loaded.record_max_bytes == 4096
    assert spacy.load(student).add_pipe("semantic_filter").record_path is None


def test_a_full_log_rotates_between_batches_into_complete_files(student, tmp_path):
    nlp = spacy.load(student)
    filt = nlp.add_pipe(
        "semantic_filter",
        config={
            "escalation_margin": 1.0,
            "record": str(tmp_path / "e.jsonl"),
            "record_max_bytes": 1,
        },
    )
    filt.set_teacher(FakeTeacher())
    list(nlp.pipe(TEXTS, batch_size=3))
    rotated = rotated_files(tmp_path / "e.jsonl")
    # Each batch went over 1 byte: four batches, four rotated files, no live file left.
    assert len(rotated) == 4 and not (tmp_path / "e.jsonl").exists()
    for path in rotated:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert path.read_bytes().endswith(b"\n")
    texts = [r["text"] for r in read_escalations(tmp_path / "e.jsonl")]
    assert texts == [t for t in TEXTS if t] and filt.n_recorded == len(texts)
    # a rotated file alone, a folder and a glob read the same records
    assert len(list(read_escalations(rotated[0]))) == 3
    assert [r["text"] for r in read_escalations(tmp_path)] == texts
    assert [r["text"] for r in read_escalations(str(tmp_path / "e.jsonl*"))] == texts


def test_keep_drops_the_oldest_rotated_files(tmp_path):
    log = EscalationLog(tmp_path / "e.jsonl", max_bytes=200, keep=2, fsync=False)
    for i in range(10):
        log.write([_record(i)])
    rotated = rotated_files(tmp_path / "e.jsonl")
    assert len(rotated) == 2 and log.n_written == 10
    pickle.loads(pickle.dumps(log)).write([_record(10)])  # as nlp.pipe(n_process=2) does
    kept = [r["text"] for r in read_escalations(tmp_path / "e.jsonl")]
    assert kept == [f"text {i}" for i in range(11 - len(kept), 11)]
    with pytest.raises(DistillError, match="max_bytes"):
        EscalationLog(tmp_path / "x.jsonl", max_bytes=0)


def test_bad_lines_are_named_and_a_torn_last_line_is_skipped(tmp_path, caplog):
    path = tmp_path / "e.jsonl"
    EscalationLog(path).write([_record(0), _record(1)])
    good = path.read_bytes()
    path.write_bytes(good + b'{"text": "half a rec')
    with caplog.at_level(logging.WARNING):
        assert len(list(read_escalations(path))) == 2
    assert f"{path}:3" in caplog.text and "without its newline" in caplog.text
    cases = {
        b"not json\n": "e.jsonl:3: not a JSON line",
        json.dumps({k: v for k, v in _record(2).items() if k != "margin"}).encode() + b"\n": (
            "e.jsonl:3: field 'margin': missing"
        ),
        json.dumps(_record(2, teacher=(1.0,))).encode() + b"\n": "e.jsonl:3: field 'teacher'",
        json.dumps(_record(2, student=[0.5, 1.5])).encode() + b"\n": "e.jsonl:3: field 'student'",
        json.dumps(_record(2, schema=2)).encode() + b"\n": "field 'schema'",
    }
    for line, message in cases.items():
        path.write_bytes(good + line)
        with pytest.raises(DistillError, match=message):
            list(read_escalations(path))
    with pytest.raises(DistillError, match="not found"):
        list(read_escalations(tmp_path / "missing.jsonl"))


def test_the_next_writer_cuts_a_torn_line_off(tmp_path, caplog):
    path = tmp_path / "e.jsonl"
    log = EscalationLog(path)
    log.write([_record(0)])
    with path.open("ab") as file_:
        file_.write(b'{"text": "torn')
    with caplog.at_level(logging.WARNING):
        log.write([_record(1)])
    assert "cut off 14 byte(s)" in caplog.text
    assert [r["text"] for r in read_escalations(path)] == ["text 0", "text 1"]


WRITER = """
import sys
from spacy_distill.filter.escalations import EscalationLog, escalation_record
log = EscalationLog(sys.argv[1])
batch = 0
while True:
    # big batches (about 1 MB in one write), so that the kill often lands inside a write
    log.write([
        escalation_record(text=f"{batch} {i} " + "x" * 5000, labels=["ham", "spam"],
                          teacher=[0.25, 0.75], student=[0.5, 0.5], margin=0.0, verdict="block",
                          exclusive=True, component="f", teacher_id="t",
                          time="2026-12-03T10:00:00+00:00")
        for i in range(200)
    ])
    batch += 1
"""


def test_a_sigkilled_writer_loses_at_most_the_batch_it_was_writing(tmp_path):
    path = tmp_path / "e.jsonl"
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(path)])
    try:
        deadline = time.monotonic() + 60
        while (
            not path.exists() or path.stat().st_size < 3_000_000
        ) and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        os.kill(writer.pid, signal.SIGKILL)
        writer.wait()
    assert writer.returncode == -signal.SIGKILL

    def batches():
        seen = [tuple(map(int, r["text"].split()[:2])) for r in read_escalations(path)]
        # every complete record, in order, with nothing missing before the last one
        assert seen == [(b, i) for b in range(seen[-1][0] + 1) for i in range(200)][: len(seen)]
        return seen

    before = batches()
    assert len(before) >= 400
    with path.open("ab") as file_:  # a torn line by hand, on top of whatever the kill left
        file_.write(b'{"text": "999 0 xxx", "labels": ["ham"')
    assert batches() == before
    EscalationLog(path).write([_record(0, text="after the crash")])
    after = list(read_escalations(path))
    assert len(after) == len(before) + 1 and after[-1]["text"] == "after the crash"


def _write_log(path: Path, records) -> Path:
    EscalationLog(path).write(records)
    return path


def test_escalations_become_targets_with_the_latest_record_per_text(tmp_path):
    log = _write_log(
        tmp_path / "e.jsonl",
        [
            _record(0, text="twice", teacher=(0.9, 0.1), time="2026-12-03T10:00:00+00:00"),
            _record(1, text="once", teacher=(0.2, 0.8)),
            _record(2, text="twice", teacher=(0.4, 0.6), time="2026-12-03T11:00:00+00:00"),
        ],
    )
    summary = escalations_to_targets(log, tmp_path / "t.spacy", labels=["spam", "ham"])
    assert (summary.n_records, summary.n_written, summary.n_duplicates) == (3, 2, 1)
    assert summary.labels == ("spam", "ham") and summary.teachers == ["fake-teacher"]
    docs = list(read_targets(tmp_path / "t.spacy"))
    assert [d.text for d in docs] == ["once", "twice"]
    targets = [get_target(d) for d in docs]
    assert targets[1].probabilities() == pytest.approx([0.6, 0.4], abs=1e-5)
    assert targets[0].probabilities() == pytest.approx([0.8, 0.2], abs=1e-5)
    provenance = targets[1].provenance
    assert (provenance.method, provenance.source, provenance.line) == ("cascade", str(log), 3)
    assert targets[1].teacher_id == "fake-teacher" and not docs[0].cats  # no gold

    other = _write_log(tmp_path / "other.jsonl", [_record(3, labels=["ham", "eggs"])])
    with pytest.raises(DistillError, match=r"other\.jsonl:1: field 'labels'"):
        escalations_to_targets([log, other], tmp_path / "x.spacy")
    multi = _write_log(tmp_path / "multi.jsonl", [_record(4, exclusive=False)])
    with pytest.raises(DistillError, match=r"multi\.jsonl:1: field 'exclusive'"):
        escalations_to_targets([log, multi], tmp_path / "x.spacy")
    with pytest.raises(DistillError, match="same labels"):
        escalations_to_targets(log, tmp_path / "x.spacy", labels=["ham", "eggs"])


def test_multi_label_escalations_become_logits(tmp_path):
    log = _write_log(tmp_path / "e.jsonl", [_record(0, teacher=(0.9, 0.7), exclusive=False)])
    escalations_to_targets(log, tmp_path / "t.spacy")
    target = get_target(next(read_targets(tmp_path / "t.spacy")))
    assert not target.exclusive
    assert target.scores == pytest.approx(numpy.log([0.9 / 0.1, 0.7 / 0.3]), abs=1e-5)


def test_the_recorded_escalations_train_the_next_student(student, tmp_path):
    from spacy_distill.training.corpus import TargetCorpus
    from spacy_distill.training.student_config import make_student_config

    nlp = spacy.load(student)
    filt = nlp.add_pipe(
        "semantic_filter", config={"escalation_margin": 1.0, "record": str(tmp_path / "e.jsonl")}
    )
    filt.set_teacher(FakeTeacher())
    list(nlp.pipe(TEXTS))
    result, output = invoke_cli("convert", tmp_path / "e.jsonl", tmp_path / "t.spacy")
    assert result.exit_code == 0, output
    assert "escalation log" in output and "Wrote 9 targets" in output
    result, output = invoke_cli(
        "convert", str(tmp_path / "e.jsonl*"), tmp_path / "t2.spacy", "--from-escalations"
    )
    assert result.exit_code == 0 and "Wrote 9 targets" in output
    config = make_student_config(tmp_path / "t.spacy", arch="bow", max_steps=20)
    trained, losses = train_config_in_process(config, tmp_path / "t.spacy", steps=20)
    assert len(list(TargetCorpus(tmp_path / "t.spacy")(trained))) == 9
    assert losses[-1] < 0.6 * losses[0]
    # the student now leans the teacher's way on the texts it doubted
    teacher = numpy.exp(FakeTeacher().score([t for t in TEXTS if t])[:, 1])
    learned = [doc.cats["spam"] for doc in trained.pipe([t for t in TEXTS if t])]
    assert numpy.corrcoef(teacher, learned)[0, 1] > 0.8, numpy.corrcoef(teacher, learned)


def test_a_log_is_told_from_records(tmp_path):
    log = _write_log(tmp_path / "e.jsonl", [_record(0)])
    records = tmp_path / "r.jsonl"
    records.write_text('{"text": "hi", "label": "ham"}\n', encoding="utf8")
    assert is_escalation_log(log) and not is_escalation_log(records)
    assert [e.line for e in read_escalation_lines(log)] == [1]


# test_packaging's start of a run without the plugin (no spacy_distill, no entry points, the
# copied runtime on sys.path), then a cascade with `record` set.
RUN_PACKAGED = (
    RUN_WITHOUT_PLUGIN[: RUN_WITHOUT_PLUGIN.index("import fake_model")]
    + """
import fake_model, numpy, spacy

class Teacher:
    labels, exclusive, teacher_id, batch_size = ("ham", "spam"), True, "https://k:s3cret@x.io", 8
    def score(self, texts):
        return numpy.log(numpy.tile([0.25, 0.75], (len(texts), 1)))

nlp = spacy.load(sys.argv[2], config={"components": {"semantic_filter": {
    "record": sys.argv[3], "escalation_margin": 1.0}}})
nlp.get_pipe("semantic_filter").set_teacher(Teacher())
texts = json.loads(sys.argv[4])
print(json.dumps([doc._.verdict_details["decided_by"] for doc in nlp.pipe(texts)]))
"""
)


def test_a_packaged_student_records_without_the_plugin(student, tmp_path):
    from spacy_distill.packaging.export import export_pipeline
    from spacy_distill.packaging.package import write_runtime

    export_pipeline(student, tmp_path / "exported", add_filter=True, check_texts=TEXTS)
    (tmp_path / "fake_model").mkdir()
    (tmp_path / "fake_model" / "__init__.py").write_text("from . import spacy_distill_runtime\n")
    write_runtime(tmp_path / "fake_model")
    log = tmp_path / "packaged.jsonl"
    run = subprocess.run(
        [
            sys.executable,
            "-c",
            RUN_PACKAGED,
            str(tmp_path),
            str(tmp_path / "exported"),
            str(log),
            json.dumps(TEXTS),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    decided_by = json.loads(run.stdout.strip().splitlines()[-1])
    records = list(read_escalations(log))
    assert [r["text"] for r in records] == [t for t, d in zip(TEXTS, decided_by) if d == "teacher"]
    assert len(records) == len(TEXTS) - 1 and "s3cret" not in log.read_text(encoding="utf8")
    assert records[0]["teacher"] == pytest.approx([0.25, 0.75])
