"""Bad input records through every reader of them: convert, augment and annotate.

Each case is a small file with good records and (maybe) bad ones. In strict mode a bad record
stops the run with an error naming its file and line, before anything is written; in skip mode
every good record comes out unchanged (counted: nothing lost) and every bad one is reported
with its line. Odd but valid text (a byte-order mark, control characters, RTL marks,
zero-width characters, a text of spaCy's maximum length) passes through unchanged.
"""

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import pytest
from typer.testing import CliRunner

from spacy_distill.annotation.annotate import annotate, convert
from spacy_distill.augment.base import Augmenter
from spacy_distill.augment.noise import CaseNoise
from spacy_distill.augment.run import augment_file
from spacy_distill.cli import app
from spacy_distill.data.records import MAX_TEXT_LENGTH, read_records, split_errors
from spacy_distill.data.targets import get_target, read_targets
from spacy_distill.errors import DistillError, RecordError
from spacy_distill.packaging.export import (
    check_package_name,
    check_package_version,
    export_pipeline,
)

from ..conftest import FakeTeacher

LABELS = ("ham", "spam")
G1 = {"id": "g1", "text": "win free cash now", "label": "spam"}
G2 = {"id": "g2", "text": "see you at lunch", "label": "ham"}
G3 = {"id": "g3", "text": "thanks for the notes", "label": "ham"}
# ~1000 long words: spaCy's maximum length, cheap to tokenize and to augment.
LONGEST = ("w" * 999 + " ") * (MAX_TEXT_LENGTH // 1000)
ODD_TEXTS = [
    "ctrl \x00 \x01 \x07 \x1b \x7f \x85 end",  # NUL, BEL, ESC, DEL, NEL
    "\u202eRTL override\u202c and marks \u200f\u200e \u0645\u0631\u062d\u0628\u0627",
    "zero\u200bwidth\u200c join\u200d no-break\ufeff and \u2060",
    "\u200b",  # a zero-width space alone: not whitespace to Python, a text to keep
]


def jsonl(*rows) -> bytes:
    """JSONL bytes: a dict is one JSON line (non-ASCII escaped, as a lone surrogate must be),
    bytes a raw line."""
    return b"".join(
        (row if isinstance(row, bytes) else json.dumps(row).encode("ascii")) + b"\n" for row in rows
    )


@dataclass
class Case:
    name: str
    filename: str
    content: bytes
    good: List[str]  # the texts every command keeps, in order
    bad: Dict[int, str] = field(default_factory=dict)  # line -> regex of its error
    commands: Tuple[str, ...] = ("convert", "augment", "annotate")
    fatal: Optional[str] = None  # a whole-file error (regex), strict and skip alike


CASES = [
    Case(
        "lone_surrogate_in_text",
        "in.jsonl",
        jsonl(G1, {"id": "b", "text": "bad \ud800 x", "label": "ham"}, G2),
        [G1["text"], G2["text"]],
        {2: r"field 'text': lone surrogate U\+D800 at character 5"},
    ),
    Case(
        "lone_surrogate_in_label_and_id",
        "in.jsonl",
        jsonl(
            G1,
            {"id": "b", "text": "fine", "label": "h\udc80am"},
            {"id": "\udfff", "text": "fine too"},
            G2,
        ),
        [G1["text"], G2["text"]],
        {2: r"field 'label': lone surrogate U\+DC80", 3: r"field 'id': lone surrogate U\+DFFF"},
    ),
    Case(
        "lone_surrogate_in_params",
        "in.jsonl",
        jsonl(G1, {"text": "made", "parent": "g1", "method": "m", "params": {"k": ["\ud83d"]}}, G2),
        [G1["text"], G2["text"]],
        {2: r"field 'params': lone surrogate U\+D83D"},
    ),
    Case(
        "a_surrogate_pair_is_a_character",
        "in.jsonl",
        jsonl(G1, {"text": "smile \ud83d\ude00", "label": "ham"}),
        [G1["text"], "smile \U0001f600"],
    ),
    Case(
        "invalid_utf8",
        "in.jsonl",
        jsonl(G1, b'{"text": "caf\xe9 latin-1", "label": "ham"}', G2, b"\xff\xfe\x00junk", G3),
        [G1["text"], G2["text"], G3["text"]],
        {
            2: r"not valid UTF-8 \(byte 0xe9 at byte 14 of the line\)",
            4: r"not valid UTF-8 \(byte 0xff at byte 1",
        },
    ),
    Case("bom_jsonl", "in.jsonl", b"\xef\xbb\xbf" + jsonl(G1, G2), [G1["text"], G2["text"]]),
    Case(
        "empty_and_whitespace_text",
        "in.jsonl",
        jsonl(G1, {"text": "", "label": "ham"}, {"text": " \t\n\u3000 ", "label": "ham"}, G2),
        [G1["text"], G2["text"]],
        {2: r"field 'text': empty text", 3: r"field 'text': empty text"},
    ),
    Case(
        "longest_text",
        "in.jsonl",
        jsonl(G1, {"text": LONGEST, "label": "ham"}),
        [G1["text"], LONGEST],
    ),
    Case(
        "too_long_text",
        "in.jsonl",
        jsonl(G1, {"text": "x" * 2**20, "label": "ham"}, G2),
        [G1["text"], G2["text"]],
        {2: r"field 'text': 1,048,576 characters, more than spaCy"},
    ),
    Case(
        "control_rtl_and_zero_width",
        "in.jsonl",
        jsonl(*({"text": text, "label": "ham"} for text in ODD_TEXTS)),
        ODD_TEXTS,
    ),
    Case(
        "wrong_types",
        "in.jsonl",
        jsonl(
            {"text": 42, "label": "ham"},
            G1,
            {"text": "listed", "label": ["ham"]},
            {"text": "x", "id": [1]},
            G2,
        ),
        [G1["text"], G2["text"]],
        {
            1: r"field 'text': expected a string, got 42",
            3: r"field 'label': expected a non-empty string",
            4: r"field 'id': expected a string or integer",
        },
    ),
    Case(
        "unknown_label",
        "in.jsonl",
        jsonl(G1, {"text": "green eggs", "label": "eggs"}, G2),
        [G1["text"], G2["text"]],
        {2: r"field 'label': unknown label\(s\) \['eggs'\]"},
        commands=("convert", "annotate"),
    ),  # augment writes no labels: it does not know the label set
    Case(
        "duplicate_ids",
        "in.jsonl",
        jsonl(
            G1,
            G2,
            {"id": "g1", "text": "another text", "label": "ham"},
            {"id": 7, "text": "seven", "label": "ham"},
            {"id": "7", "text": "seven again", "label": "ham"},
            G3,
        ),
        [G1["text"], G2["text"], "seven", G3["text"]],
        {3: r"field 'id': id 'g1' on line 3 repeats line 1", 5: r"id '7' on line 5 repeats line 4"},
    ),
    Case(
        "not_json_at_all",
        "in.jsonl",
        b"Dear team,\nplease find attached\n" + jsonl(G1),
        [G1["text"]],
        {1: r"invalid JSON \(Expecting value at column 1\)", 2: r"invalid JSON"},
    ),
    Case(
        "binary_file",
        "in.jsonl",
        b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03",
        [],
        {1: r"not valid UTF-8 \(byte 0x8b"},
        fatal=r"no valid",
    ),
    Case("empty_file", "in.jsonl", b"", [], fatal=r"no valid"),
    Case(
        "csv_quoting",
        "in.csv",
        b"id,text,label\r\n"
        b'c1,"He said ""hi"", then left",ham\r\n'
        b'c2,"two\r\nlines, ""quoted""",spam\r\n'
        b"\r\n"
        b"c3,,ham\r\n"
        b'c4,"bad "quote,ham\r\n'
        b"c5,plain,spam\r\n",
        ['He said "hi", then left', 'two\r\nlines, "quoted"', "plain"],
        {6: r"field 'text': empty text", 7: r"not valid CSV \(',' expected after '\"'\)"},
    ),
    # The bad byte is on the second line of a record that starts on line 2: that line is named.
    Case(
        "csv_bom_bad_bytes_and_repeated_id",
        "in.csv",
        b'\xef\xbb\xbftext,label,id\n"multi\ncaf\xe9",ham,a\nfine,ham,b\nfine again,ham,b\n',
        ["fine"],
        {3: r"not valid UTF-8 \(byte 0xe9 at byte 4", 5: r"id 'b' on line 5 repeats line 4"},
    ),
    Case(
        "csv_unclosed_quote",
        "in.csv",
        b'text,label\nok,ham\n"never closed,ham\nswallowed,spam\n',
        ["ok"],
        {
            3: r"a quoted field that starts here is never closed \(it runs to line 4, the end of the file\)"
        },
    ),
    Case("csv_empty_file", "in.csv", b"", [], fatal=r"empty file \(no header row"),
]


def _texts_of_targets(path: Path) -> List[str]:
    return [doc.text for doc in read_targets(path)]


def run(
    command: str, path: Path, out_dir: Path, on_error: str
) -> Tuple[List[str], List[str], Path]:
    """Run a command on `path`. RETURNS the texts it wrote, the errors it reported, the output."""
    if command == "convert":
        out = out_dir / "out.spacy"
        summary = convert(path, out, labels=LABELS, exclusive=True, on_error=on_error)
        return _texts_of_targets(out), summary.errors, out
    if command == "annotate":
        out = out_dir / "out.spacy"
        summary = annotate(path, out, FakeTeacher(), on_error=on_error, show_progress=False)
        docs = list(read_targets(out))
        assert all(get_target(doc).has_teacher for doc in docs)
        return [doc.text for doc in docs], summary.errors, out
    out = out_dir / "out.jsonl"
    steps = {"upper": CaseNoise(n=1, rate=1.0, modes=["upper"])}
    summary = augment_file(
        path, out, steps, keep_seeds=True, on_error=on_error, show_progress=False
    )
    # split("\n"), not splitlines(): texts may hold U+0085 or U+2028, which JSON keeps raw.
    rows = [json.loads(line) for line in out.read_text(encoding="utf8").split("\n") if line]
    seeds = [row for row in rows if "parent" not in row]
    assert len(rows) - len(seeds) == summary.n_variants.get("upper", 0)
    return [row["text"] for row in seeds], summary.errors, out


PARAMS = [
    pytest.param(case, command, id=f"{case.name}-{command}")
    for case in CASES
    for command in case.commands
]
# Skip mode differs from strict mode only where something is bad.
SKIP_PARAMS = [p for p in PARAMS if p.values[0].bad or p.values[0].fatal]


@pytest.mark.parametrize("case,command", PARAMS)
def test_strict_mode_names_file_and_line_and_writes_nothing(tmp_path, case, command):
    path = tmp_path / case.filename
    path.write_bytes(case.content)
    out_dir = tmp_path / "out"
    if case.bad:
        line = min(case.bad)
        with pytest.raises(RecordError, match=re.escape(f"{path}:{line}:") + ".*" + case.bad[line]):
            run(command, path, out_dir, "fail")
        assert not out_dir.exists() or not list(
            out_dir.iterdir()
        )  # nothing written, no temporaries
    elif case.fatal:
        with pytest.raises(DistillError, match=re.escape(str(path)) + ".*" + case.fatal):
            run(command, path, out_dir, "fail")
    else:
        texts, errors, _ = run(command, path, out_dir, "fail")
        assert texts == case.good and errors == []  # unchanged, to the code point


@pytest.mark.parametrize("case,command", SKIP_PARAMS)
def test_skip_mode_keeps_every_good_record_and_reports_every_bad_one(tmp_path, case, command):
    path = tmp_path / case.filename
    path.write_bytes(case.content)
    if case.fatal:
        with pytest.raises(DistillError, match=re.escape(str(path)) + ".*" + case.fatal):
            run(command, path, tmp_path / "out", "skip")
        return
    texts, errors, out = run(command, path, tmp_path / "out", "skip")
    assert texts == case.good
    assert len(errors) == len(case.bad), errors
    for error, (line, pattern) in zip(errors, sorted(case.bad.items())):
        assert re.match(re.escape(f"{path}:{line}:") + ".*" + pattern, error), (
            error,
            line,
            pattern,
        )
    assert sorted(p.name for p in out.parent.iterdir()) == [out.name]  # no temporaries left


def test_read_records_reports_bad_lines_and_goes_on(tmp_path):
    # The record layer alone: lines after a bad one keep their numbers and their records.
    path = tmp_path / "in.jsonl"
    path.write_bytes(
        b"\xef\xbb\xbf" + jsonl(G1, b"\xc3\x28", G2, {"id": "g1", "text": "again"}, G3)
    )
    records, errors = split_errors(read_records(path))
    assert [(r.line, r.id) for r in records] == [(1, "g1"), (3, "g2"), (5, "g3")]
    assert [str(e).split(": ")[0] for e in errors] == [f"{path}:2", f"{path}:4"]
    # Every record, repeats included, for readers that need all texts (an evaluation index).
    assert len(split_errors(read_records(path, unique_ids=False))[0]) == 4
    utf16 = tmp_path / "utf16.jsonl"
    utf16.write_bytes(jsonl(G1).decode().encode("utf-16"))
    with pytest.raises(RecordError, match=re.escape(f"{utf16}:1: the file is UTF-16 encoded")):
        list(read_records(utf16))


def test_many_ids_move_to_disk_and_still_repeat(tmp_path, monkeypatch):
    import spacy_distill.data.records as records_module

    monkeypatch.setattr(records_module, "IDS_IN_MEMORY", 3)
    rows = [{"id": f"r{i}", "text": f"text {i}"} for i in range(8)] + [
        {"id": "r1", "text": "late"},
        {"id": "r7", "text": "x"},
    ]
    path = tmp_path / "in.jsonl"
    path.write_bytes(jsonl(*rows))
    records, errors = split_errors(read_records(path))
    assert len(records) == 8
    assert [str(e).split(": ", 1)[1] for e in errors] == [
        "field 'id': id 'r1' on line 9 repeats line 2; give each record its own id",
        "field 'id': id 'r7' on line 10 repeats line 8; give each record its own id",
    ]


class Exploding(Augmenter):
    """Fails on the second seed, after the first seed's variant was written."""

    method = "test.Exploding.v1"

    def __init__(self, error: BaseException):
        super().__init__(1)
        self.error = error

    def transform(self, text, rng):
        if text == G2["text"]:
            raise self.error
        return text.upper()


@pytest.mark.parametrize(
    "error", [RuntimeError("augmenter died"), KeyboardInterrupt()], ids=["error", "ctrl-c"]
)
def test_augment_failure_leaves_no_temporary_and_keeps_the_old_output(tmp_path, error):
    seeds = tmp_path / "seeds.jsonl"
    seeds.write_bytes(jsonl(G1, G2))
    out = tmp_path / "out.jsonl"
    out.write_text("previous output\n", encoding="utf8")
    with pytest.raises(type(error)):
        augment_file(seeds, out, {"boom": Exploding(error)}, show_progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl", "seeds.jsonl"]
    assert out.read_text(encoding="utf8") == "previous output\n"


def test_library_functions_refuse_bad_numbers(tmp_path):
    from spacy_distill.cli.tune import tune

    seeds = tmp_path / "seeds.jsonl"
    seeds.write_bytes(jsonl(G1, G2))
    with pytest.raises(
        DistillError, match=r"limit must be an integer >= 0 \(0: all seeds\), got -5"
    ):
        augment_file(seeds, tmp_path / "out.jsonl", {}, limit=-5, show_progress=False)
    with pytest.raises(DistillError, match=r"seed must be an integer, got 1.5"):
        augment_file(seeds, tmp_path / "out.jsonl", {}, seed=1.5, show_progress=False)
    assert not (tmp_path / "out.jsonl").exists()
    for arg in ("value", "escalation_rate", "cascade_accuracy"):
        with pytest.raises(DistillError, match=rf"{arg} must be in \[0, 1\], got 1.5"):
            tune("no/such/student", seeds, **{arg: 1.5})


@pytest.mark.parametrize(
    "name", ["../../../x", "a/b", "x-y", "_x", "x_", "modèle", "1x", "has space"]
)
def test_export_refuses_a_package_name_spacy_package_refuses(tmp_path, name):
    with pytest.raises(
        DistillError, match=re.escape(f"name {name!r}: not a package name spaCy accepts")
    ):
        export_pipeline(tmp_path / "no-such-pipeline", tmp_path / "out", name=name)
    with pytest.raises(DistillError, match=r"version '\.\./x': not a package version"):
        export_pipeline(tmp_path / "no-such-pipeline", tmp_path / "out", version="../x")
    assert not (tmp_path / "out").exists()


def test_package_names_spacy_accepts_pass():
    for name in ("spam_filter", "student2", "en_core_web", "A1"):
        check_package_name(name)
    for version in ("1.0.0", "0.1.dev3", "2.0.0rc1"):
        check_package_version(version)


runner = CliRunner()


def _invoke(*args):
    result = runner.invoke(app, [str(a) for a in args])
    return result, " ".join(
        (result.stdout + (result.stderr if result.stderr_bytes is not None else "")).split()
    )


def test_cli_reports_the_line_and_skips_on_request(tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_bytes(
        jsonl(
            G1,
            {"text": "bad \udc00", "label": "ham"},
            b"\x80",
            G2,
            {"id": "g1", "text": "again", "label": "ham"},
        )
    )
    result, output = _invoke("convert", path, tmp_path / "out.spacy", "--labels", "ham,spam")
    assert result.exit_code == 1 and f"{path}:2: field 'text': lone surrogate U+DC00" in output
    assert "Traceback" not in output and not (tmp_path / "out.spacy").exists()
    result, output = _invoke(
        "convert", path, tmp_path / "out.spacy", "--labels", "ham,spam", "--on-error", "skip"
    )
    assert result.exit_code == 0, output
    assert _texts_of_targets(tmp_path / "out.spacy") == [G1["text"], G2["text"]]
    cfg = tmp_path / "augment.cfg"
    cfg.write_text(
        '[augment]\n\n[augment.steps]\n\n[augment.steps.up]\n@text_augmenters = "spacy-distill.CaseNoise.v1"\n'
        'rate = 1.0\nmodes = ["upper"]\n',
        encoding="utf8",
    )
    out = tmp_path / "aug.jsonl"
    result, output = _invoke("augment", path, out, "--config", cfg, "--no-progress")
    assert result.exit_code == 1 and f"{path}:2: field 'text'" in output and not out.exists()
    result, output = _invoke(
        "augment", path, out, "--config", cfg, "--no-progress", "--on-error", "skip"
    )
    assert result.exit_code == 0, output
    assert "Skipped 3 bad record(s)" in output and f"{path}:3: not valid UTF-8" in output
    assert f"{path}:5: field 'id': id 'g1' on line 5 repeats line 1" in output
    assert [json.loads(line)["parent"] for line in out.read_text(encoding="utf8").splitlines()] == [
        "g1",
        "g2",
    ]


def test_cli_convert_reports_a_bad_labels_from_file(tmp_path):
    data = tmp_path / "in.jsonl"
    data.write_bytes(jsonl(G1, G2))
    utf16 = tmp_path / "dev.jsonl"
    utf16.write_bytes(jsonl(G1).decode().encode("utf-16"))
    result, output = _invoke("convert", data, tmp_path / "out.spacy", "--labels-from", utf16)
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.exception
    assert f"{utf16}:1: the file is UTF-16 encoded" in output


@pytest.mark.parametrize(
    "args,option",
    [
        (["convert", "--limit", "-5"], "--limit"),
        (["augment", "--limit", "-1", "--config", "{cfg}"], "--limit"),
        (["evaluate", "student", "--limit", "-1", "--data", "{data}"], "--limit"),
        (["evaluate", "student", "--batch-size", "0", "--data", "{data}"], "--batch-size"),
        (["evaluate", "student", "--latency-n", "-1", "--data", "{data}"], "--latency-n"),
        (["export", "trained", "out", "--check-limit", "-1"], "--check-limit"),
        (["init-config", "-", "-T", "0", "--train", "{data}"], "--temperature"),
        (["init-config", "-", "--alpha", "1.5", "--train", "{data}"], "--alpha"),
        (["init-config", "-", "--max-steps", "0", "--train", "{data}"], "--max-steps"),
        (["init-config", "-", "--width", "0", "--train", "{data}"], "--width"),
        (["init-config", "-", "--hidden-weight", "-1", "--train", "{data}"], "--hidden-weight"),
        (["check-teacher", "--weak-f1", "2", "{data}"], "--weak-f1"),
        (["tune", "student", "--escalation-rate", "1.5", "--data", "{data}"], "--escalation-rate"),
        (
            ["tune", "student", "--cascade-accuracy", "-0.1", "--data", "{data}"],
            "--cascade-accuracy",
        ),
        (["tune", "student", "--value", "2", "--data", "{data}"], "--value"),
        (["word-vectors", "out", "--dims", "0", "--data", "{data}"], "--dims"),
        (["word-vectors", "out", "--batch-size", "0", "--data", "{data}"], "--batch-size"),
        (["word-vectors", "out", "--max-words", "-1", "--data", "{data}"], "--max-words"),
        (["word-vectors", "out", "--subwords", "-1", "--data", "{data}"], "--subwords"),
        (
            ["word-vectors", "out", "--sif-coefficient", "-1", "--data", "{data}"],
            "--sif-coefficient",
        ),
    ],
)
def test_cli_refuses_out_of_range_numbers(tmp_path, args, option):
    data = tmp_path / "in.jsonl"
    data.write_bytes(jsonl(G1, G2))
    cfg = tmp_path / "augment.cfg"
    cfg.write_text("[augment]\n\n[augment.steps]\n", encoding="utf8")
    args = [a.format(data=data, cfg=cfg) for a in args]
    if args[0] in ("convert", "augment"):
        args[1:1] = [str(data), str(tmp_path / "out")]
    result, output = _invoke(*args)
    assert result.exit_code == 2, output
    assert f"Invalid value for '{option}'" in output
    assert not (tmp_path / "out").exists()
