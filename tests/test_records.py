import pytest

from spacy_distill.data.records import Record, read_records, split_errors
from spacy_distill.errors import RecordError


def test_jsonl_records_and_errors_with_line_numbers(tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_text(
        '{"text": "hello", "label": "ham", "id": 7}\n'
        "\n"
        '{"text": "oops"\n'
        '{"text": "   "}\n'
        '{"text": "two", "labels": ["a", "b", "a"]}\n'
        '["not", "an", "object"]\n'
        '{"text": "both", "label": "a", "labels": ["b"]}\n'
        '{"text": 5}\n'
        '{"text": "no gold"}\n',
        encoding="utf8",
    )
    records, errors = split_errors(read_records(path))
    assert records[0] == Record("hello", ("ham",), False, "7", str(path), 1)
    assert records[1].labels == ("a", "b") and records[1].multi_label and records[1].line == 5
    assert records[2].labels is None and records[2].line == 9
    messages = [str(e) for e in errors]
    assert messages[0].startswith(f"{path}:3: invalid JSON")
    assert messages[1] == f"{path}:4: field 'text': empty text"
    assert messages[2].startswith(f"{path}:6: expected a JSON object")
    assert messages[3].startswith(f"{path}:7: give either 'label' or 'labels'")
    assert messages[4].startswith(f"{path}:8: field 'text': expected a string")


def test_csv_records(tmp_path):
    path = tmp_path / "in.csv"
    path.write_text(
        'id,text,labels\n1,"multi\nline text",a|b\n2,plain,\n3,extra,a,oops\n', encoding="utf8"
    )
    records, errors = split_errors(read_records(path))
    assert (
        records[0].text == "multi\nline text"
        and records[0].labels == ("a", "b")
        and records[0].line == 2
    )
    assert records[1].labels is None and records[1].line == 4
    assert str(errors[0]).startswith(f"{path}:5: more fields")
    bad = tmp_path / "bad.csv"
    bad.write_text("body,label\nx,y\n", encoding="utf8")
    with pytest.raises(RecordError, match="bad.csv:1: the header has no 'text' column"):
        list(read_records(bad))
