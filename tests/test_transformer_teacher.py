"""A spacy-transformers teacher (a tiny random BERT built in a temp dir) through annotate and
`spacy train`: the listener path of the logits reader, end to end."""
import subprocess
import sys

import numpy
import pytest
import spacy
from spacy.training import Example

from spacy_distill.annotate import annotate
from spacy_distill.student_config import make_student_config
from spacy_distill.targets import get_target, read_targets
from spacy_distill.teachers import SpacyTeacher

from .conftest import SPAM_TEXTS, write_jsonl

pytest.importorskip("spacy_transformers")
transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

TRF_TEACHER_CONFIG = """
[nlp]
lang = "en"
pipeline = ["transformer", "textcat"]

[components]

[components.transformer]
factory = "transformer"

[components.transformer.model]
@architectures = "spacy-transformers.TransformerModel.v3"
name = "{model_dir}"
tokenizer_config = {{"use_fast": true}}

[components.transformer.model.get_spans]
@span_getters = "spacy-transformers.strided_spans.v1"
window = 32
stride = 24

[components.textcat]
factory = "textcat"

[components.textcat.model]
@architectures = "spacy.TextCatReduce.v1"
exclusive_classes = true
use_reduce_first = false
use_reduce_last = false
use_reduce_max = false
use_reduce_mean = true

[components.textcat.model.tok2vec]
@architectures = "spacy-transformers.TransformerListener.v1"
grad_factor = 1.0
pooling = {{"@layers": "reduce_mean.v1"}}
upstream = "*"
"""


def build_tiny_bert(path):
    """A 2-layer, 32-wide random BERT and a WordPiece tokenizer trained on the toy texts."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    trainer = trainers.WordPieceTrainer(vocab_size=200, special_tokens=special)
    tokenizer.train_from_iterator([t for t, _ in SPAM_TEXTS] * 3, trainer=trainer)
    fast = transformers.BertTokenizerFast(tokenizer_object=tokenizer, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]")
    fast.save_pretrained(path)
    config = transformers.BertConfig(
        vocab_size=fast.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=64,
    )
    transformers.BertModel(config).save_pretrained(path)
    return path


@pytest.mark.slow
def test_transformer_teacher_annotates_and_student_learns_it(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    model_dir = build_tiny_bert(tmp_path / "tiny_bert")
    config = spacy.util.load_config_from_str(TRF_TEACHER_CONFIG.format(model_dir=model_dir))
    nlp = spacy.util.load_model_from_config(config, auto_fill=True)
    examples = [
        Example.from_dict(nlp.make_doc(t), {"cats": {"ham": float(l == "ham"), "spam": float(l == "spam")}})
        for t, l in SPAM_TEXTS
    ]
    optimizer = nlp.initialize(lambda: examples)
    for _ in range(15):
        nlp.update(examples, sgd=optimizer)
    nlp.to_disk(tmp_path / "teacher")

    teacher = SpacyTeacher(spacy.load(tmp_path / "teacher"), batch_size=3)
    # The same saved teacher has the same fingerprint in another process (its cache entries
    # are found again); spacy-transformers' to_bytes differs per process, the files do not.
    code = (
        "import sys, spacy; from spacy_distill.teachers.spacy_teacher import SpacyTeacher; "
        "print(SpacyTeacher(spacy.load(sys.argv[1])).fingerprint)"
    )
    other = subprocess.run([sys.executable, "-c", code, str(tmp_path / "teacher")], capture_output=True, text=True, check=True)
    assert other.stdout.split()[-1] == teacher.fingerprint
    texts = [t for t, _ in SPAM_TEXTS]
    scores = teacher.score(texts)
    cats = [doc.cats for doc in spacy.load(tmp_path / "teacher").pipe(texts)]
    numpy.testing.assert_allclose(numpy.exp(scores), [[c["ham"], c["spam"]] for c in cats], atol=1e-4)

    data = write_jsonl(tmp_path / "unlabelled.jsonl", [{"text": t} for t in texts])
    summary = annotate(data, tmp_path / "train.spacy", teacher, show_progress=False)
    assert summary.n_written == len(texts) and summary.n_gold == 0
    target = get_target(next(iter(read_targets(tmp_path / "train.spacy"))))
    assert target.teacher_id == teacher.teacher_id == f"spacy:en_pipeline-0.0.0/textcat@{teacher.fingerprint[:8]}"
    assert target.fingerprint == teacher.fingerprint

    student_config = make_student_config(tmp_path / "train.spacy", temperature=1.0, alpha=1.0, max_steps=150)
    student_config["training"]["eval_frequency"] = 50
    student_config["training"]["optimizer"]["learn_rate"] = 0.01
    student_config.to_disk(tmp_path / "student.cfg")
    from spacy.cli.train import train

    train(tmp_path / "student.cfg", tmp_path / "student")
    student = spacy.load(tmp_path / "student" / "model-last")
    student_spam = numpy.array([doc.cats["spam"] for doc in student.pipe(texts)])
    numpy.testing.assert_allclose(student_spam, numpy.exp(scores[:, 1]), atol=0.1)
