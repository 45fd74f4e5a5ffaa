import spacy

from spacy_distill.data.targets import write_targets
from spacy_distill.training.corpus import create_target_corpus_reader

from .conftest import make_target_docs


def test_reader_yields_examples_with_targets_on_the_reference(tmp_path):
    docs = make_target_docs(
        [
            ("free cash", [0.2, 0.8], {}),
            ("hi there", None, {"ham": 1.0, "spam": 0.0}),
            ("both", [0.5, 0.5], {"ham": 0.0, "spam": 1.0}),
        ]
    )
    path = write_targets(docs, tmp_path / "t.spacy")
    nlp = spacy.blank("en")
    examples = list(create_target_corpus_reader(path)(nlp))
    assert [eg.reference.text for eg in examples] == ["free cash", "hi there", "both"]
    assert "spacy_distill" in examples[0].reference.user_data
    assert examples[0].predicted.text == "free cash" and not examples[0].predicted.user_data
    assert [
        eg.reference.text for eg in create_target_corpus_reader(path, require_gold=True)(nlp)
    ] == ["hi there", "both"]
    assert len(list(create_target_corpus_reader(path, limit=1)(nlp))) == 1
