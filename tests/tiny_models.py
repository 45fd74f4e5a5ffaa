"""Tiny random Hugging Face models built in a folder in about a second: tokenizers trained on toy
texts with the `tokenizers` library, 1-2 layer, 32-wide configs. Nothing is downloaded. The
session-scoped fixtures in conftest.py build the shared ones once; a test that needs its own
(another corpus, a chat template) calls these builders."""

from pathlib import Path
from typing import Optional, Sequence

import torch
import transformers
from tokenizers import (
    Tokenizer,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    processors,
    trainers,
)

from .conftest import SPAM_TEXTS

SPAM_CORPUS = [text for text, _ in SPAM_TEXTS] * 3
# Longer texts beside the spam ones, so that the BERT and Llama vocabularies have more words.
PROBE_TEXTS = [
    "win a free prize now",
    "see you",
    "are we still meeting tomorrow or should we call it off and meet next week instead",
    "free cash",
    "thanks for the notes, see you at lunch",
    "claim your free reward today",
]
CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}</s>\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
# A spacy-transformers teacher: a transformer (the `{model_dir}` placeholder) and a textcat that
# mean-pools its output through a listener.
TRF_TEXTCAT_CONFIG = """
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


def build_tokenizer(texts: Sequence[str] = SPAM_CORPUS) -> transformers.BertTokenizerFast:
    """A WordPiece tokenizer trained on `texts`, with BERT's [CLS] ... [SEP] template."""
    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    trainer = trainers.WordPieceTrainer(vocab_size=200, special_tokens=special, show_progress=False)
    tokenizer.train_from_iterator(texts, trainer=trainer)
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[(name, tokenizer.token_to_id(name)) for name in ("[CLS]", "[SEP]")],
    )
    return transformers.BertTokenizerFast(
        tokenizer_object=tokenizer,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )


def byte_bpe_tokenizer(
    texts: Sequence[str], single: str = "<s> $A", chat: bool = False, normalizer=None
) -> transformers.PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer as causal LMs and BART ship: trained on `texts`, with a pad
    token, the template `single` (its <s> and </s> as special tokens) and, with `chat`, a chat
    template."""
    special = ["<pad>", "<s>", "</s>", "<|user|>", "<|assistant|>", "<|system|>"]
    tokenizer = Tokenizer(models.BPE())
    if normalizer is not None:
        tokenizer.normalizer = normalizer
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=special,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    tokenizer.post_processor = processors.TemplateProcessing(
        single=single,
        special_tokens=[
            (name, tokenizer.token_to_id(name)) for name in ("<s>", "</s>") if name in single
        ],
    )
    fast = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token="<s>", eos_token="</s>", pad_token="<pad>"
    )
    if chat:
        fast.chat_template = CHAT_TEMPLATE
    return fast


def randomize(model, scale: float = 0.3) -> None:
    """Redraw every weight but the norms from N(0, scale): a fresh model's small weights give
    near-uniform outputs, large ones make its answers differ clearly between texts."""
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "norm" not in name:
                param.normal_(0.0, scale)


def build_tiny_classifier(
    path: Path,
    tokenizer,
    id2label: Sequence[str],
    problem_type: Optional[str] = None,
    seed: int = 0,
) -> Path:
    """A 2-layer, 32-wide random BERT sequence classifier, saved with its tokenizer."""
    tokenizer.save_pretrained(path)
    config = transformers.BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
        num_labels=len(id2label),
        id2label=dict(enumerate(id2label)),
        label2id={label: i for i, label in enumerate(id2label)},
        problem_type=problem_type,
    )
    torch.manual_seed(seed)
    model = transformers.BertForSequenceClassification(config)
    # Random heads give near-uniform outputs; larger weights make the checks meaningful.
    with torch.no_grad():
        model.classifier.weight.mul_(20.0)
    model.save_pretrained(path)
    return path


def build_tiny_bert(path: Path) -> Path:
    """A 2-layer, 32-wide random BERT and a WordPiece tokenizer trained on the toy texts."""
    tokenizer = build_tokenizer(SPAM_CORPUS + PROBE_TEXTS)
    tokenizer.save_pretrained(path)
    config = transformers.BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    torch.manual_seed(0)
    transformers.BertModel(config).save_pretrained(path)
    return path


def build_tiny_llama(path: Path) -> Path:
    """A 2-layer, 32-wide random Llama and a byte-level BPE tokenizer that prepends <s> and has
    no pad token (as causal LMs often ship)."""
    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<unk>", "<s>", "</s>"], show_progress=False
    )
    tokenizer.train_from_iterator(SPAM_CORPUS + PROBE_TEXTS, trainer=trainer)
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A", special_tokens=[("<s>", 1)]
    )
    fast = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token="<s>", eos_token="</s>", unk_token="<unk>"
    )
    fast.save_pretrained(path)
    config = transformers.LlamaConfig(
        vocab_size=len(fast),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=128,
        bos_token_id=1,
        eos_token_id=2,
    )
    torch.manual_seed(1)
    transformers.LlamaForCausalLM(config).save_pretrained(path)
    return path


def build_random_llama(path: Path, tokenizer) -> Path:
    """A 2-layer, 32-wide Llama with large random weights (`randomize`), saved with `tokenizer`
    (a `byte_bpe_tokenizer`, which has a pad token)."""
    tokenizer.save_pretrained(path)
    config = transformers.LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(config)
    randomize(model)
    model.save_pretrained(path)
    return path
