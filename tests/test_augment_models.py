"""Augmenters that run models, on tiny random models built in a temp dir (their output is
gibberish: what is checked is determinism, cleaning, dedup and echo dropping, provenance and
the plumbing), and the OpenAI-compatible generator against a stub server on 127.0.0.1."""

import json
import random
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy
import pytest
import torch
import transformers

from spacy_distill.augment.back_translation import LLMBackTranslation
from spacy_distill.augment.base import derive_rng
from spacy_distill.augment.config import load_augment_config
from spacy_distill.augment.run import augment_file
from spacy_distill.augment.teacher_written import LabelExamples, Paraphrase, clean_answer, is_echo
from spacy_distill.errors import DistillError
from spacy_distill.registry import registry

from .conftest import write_jsonl
from .tiny_models import build_random_llama, build_tokenizer, byte_bpe_tokenizer, randomize

pytestmark = pytest.mark.usefixtures("hf_offline", "one_torch_thread")

CORPUS = [
    "the film was great and the actors were wonderful",
    "a terrible boring movie , i hated every minute",
    "win a free prize now , claim your cash",
    "see you at lunch tomorrow , thanks for the notes",
    "Rewrite the following text in other words . Text : Rewritten text :",
    "Translate the following text into German . Translation :",
]
SEEDS = ["the film was great", "win a free prize now", "see you at lunch"]


def _bpe_tokenizer(chat: bool = False):
    return byte_bpe_tokenizer(CORPUS * 5, single="<s> $A </s>", chat=chat)


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory) -> Path:
    return build_random_llama(
        tmp_path_factory.mktemp("aug_llama") / "model", _bpe_tokenizer(chat=True)
    )


@pytest.fixture(scope="module")
def tiny_bart_pair(tmp_path_factory):
    paths = []
    for i in range(2):
        path = tmp_path_factory.mktemp(f"aug_bart{i}") / "model"
        tokenizer = _bpe_tokenizer()
        tokenizer.save_pretrained(path)
        config = transformers.BartConfig(
            vocab_size=len(tokenizer),
            d_model=16,
            encoder_layers=1,
            decoder_layers=1,
            encoder_attention_heads=2,
            decoder_attention_heads=2,
            encoder_ffn_dim=32,
            decoder_ffn_dim=32,
            max_position_embeddings=64,
            pad_token_id=tokenizer.pad_token_id,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            decoder_start_token_id=tokenizer.eos_token_id,
            forced_bos_token_id=None,
            forced_eos_token_id=None,
        )
        torch.manual_seed(i)
        model = transformers.BartForConditionalGeneration(config)
        randomize(model, 0.5)
        model.generation_config.max_length = 24
        model.save_pretrained(path)
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("aug_bert") / "model"
    tokenizer = build_tokenizer(CORPUS * 3)
    tokenizer.save_pretrained(path)
    config = transformers.BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    torch.manual_seed(0)
    model = transformers.BertForMaskedLM(config)
    randomize(model, 0.5)
    model.save_pretrained(path)
    return path


class ScriptedGenerator:
    """A generator whose answers are set by the test (per call, in order)."""

    def __init__(self, answers):
        self.answers = list(answers)
        self.calls = []

    params = {"generator": "scripted"}

    def generate(self, prompt, n, seed, temperature=None):
        self.calls.append((prompt, n, seed, temperature))
        return self.answers.pop(0) if self.answers else []


def test_clean_answer():
    assert clean_answer('  "Rewritten text: A new text."\nmore') == "A new text."
    assert clean_answer("\n\nParaphrase: hi there") == "hi there"
    assert clean_answer("   ") == ""


def test_paraphrase_drops_empty_echoed_and_repeated_answers():
    generator = ScriptedGenerator(
        [["", "win a free prize now", "Win big now", "Win big now"], ["Grab a prize", "x"]]
    )
    augmenter = Paraphrase(generator, n=3)
    out = augmenter.augment("win a free prize now", random.Random(0), 3)
    assert out == ["Win big now", "Grab a prize", "x"][:3]
    assert generator.calls[0][1] == 3 and generator.calls[1][1] == 2  # the second call fills in
    assert "{text}" not in generator.calls[0][0] and "win a free prize now" in generator.calls[0][0]
    with pytest.raises(DistillError, match="prompt"):
        Paraphrase(generator, prompt="no text field")


def test_an_answer_with_only_case_spacing_or_punctuation_changed_is_an_echo():
    # SmolLM2-135M hands back "the film is strictly routine ." as "The film is strictly routine."
    assert is_echo("The film is strictly routine.", "the film is strictly routine .")
    assert not is_echo("The film is strictly dull.", "the film is strictly routine .")
    generator = ScriptedGenerator(
        [["The film was great.", "  THE FILM  WAS GREAT ", "the film was superb"]]
    )
    assert Paraphrase(generator, n=3, attempts=1).augment(
        "the film was great", random.Random(0), 3
    ) == ["the film was superb"]


def test_clean_answer_removes_a_language_label():
    assert (
        clean_answer('English: "The film was fine."', labels=("English",)) == "The film was fine."
    )
    assert clean_answer("In German: Der Film", labels=("German",)) == "Der Film"
    assert clean_answer("English: text") == "English: text"  # only the labels asked for


def test_llm_back_translation_cleans_labels_and_skips_untranslated_pivots():
    generator = ScriptedGenerator(
        [
            [
                'German: "Der Film war toll"',
                "The film was great.",
                "  ",
            ],  # there: one real pivot, one echo, one empty
            ['English: "The movie was terrific."'],  # back, for the one real pivot
        ]
    )
    augmenter = LLMBackTranslation(generator, "German", n=3)
    assert augmenter.augment("the film was great", random.Random(0), 3) == [
        "The movie was terrific."
    ]
    assert len(generator.calls) == 2
    back_prompt, n, _, temperature = generator.calls[1]
    assert (
        "Text: Der Film war toll\n" in back_prompt
        and "English" in back_prompt
        and (n, temperature) == (1, 0.0)
    )
    # A way back that returns the pivot untranslated, or the seed, is no variant.
    for answer in ("Der Film war toll", "the film was great"):
        generator = ScriptedGenerator([["Der Film war toll"], [answer]])
        assert (
            LLMBackTranslation(generator, "German", n=1).augment(
                "the film was great", random.Random(0), 1
            )
            == []
        )


def test_label_examples_are_seedless_with_the_label_in_params(tmp_path):
    generator = ScriptedGenerator([["Free money!", "Free money!"], ["Lunch at noon?"]])
    steps = {
        "write": LabelExamples(
            generator, {"spam": "unwanted ads", "ham": "normal messages"}, n=1, shots=1
        )
    }
    seeds = write_jsonl(tmp_path / "seeds.jsonl", [{"text": t} for t in SEEDS])
    augment_file(seeds, tmp_path / "out.jsonl", steps, show_progress=False)
    rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [(r["text"], r["parent"], r["params"]["label"], r["id"]) for r in rows] == [
        ("Free money!", None, "spam", "write.1"),
        ("Lunch at noon?", None, "ham", "write.2"),
    ]
    assert "unwanted ads" in generator.calls[0][0] and "Examples" in generator.calls[0][0]


def _run_twice(tmp_path, steps_factory, seeds=SEEDS, seed=0):
    path = write_jsonl(
        tmp_path / "seeds.jsonl", [{"text": t, "id": f"s{i}"} for i, t in enumerate(seeds)]
    )
    outputs = []
    for name in ("a", "b"):
        augment_file(
            path, tmp_path / f"{name}.jsonl", steps_factory(), seed=seed, show_progress=False
        )
        outputs.append((tmp_path / f"{name}.jsonl").read_bytes())
    return outputs


def test_hf_paraphrase_is_deterministic_with_provenance(tmp_path, tiny_llama):
    cfg = tmp_path / "augment.cfg"
    cfg.write_text(
        "[augment]\nseed = 0\n\n[augment.steps]\n\n"
        '[augment.steps.para]\n@text_augmenters = "spacy-distill.Paraphrase.v1"\nn = 2\none_line = false\n\n'
        f'[augment.steps.para.generator]\n@misc = "spacy-distill.HFGenerator.v1"\nmodel = "{tiny_llama}"\n'
        'max_new_tokens = 8\ndevice = "cpu"\n\n'
        '[augment.steps.back]\n@text_augmenters = "spacy-distill.LLMBackTranslation.v1"\nn = 1\nlanguage = "German"\n\n'
        f'[augment.steps.back.generator]\n@misc = "spacy-distill.HFGenerator.v1"\nmodel = "{tiny_llama}"\n'
        'max_new_tokens = 6\ndevice = "cpu"\nuse_chat_template = false\n',
        encoding="utf8",
    )
    plan = load_augment_config(cfg)
    assert plan.steps["para"].generator.use_chat_template  # the tokenizer has a chat template
    a, b = _run_twice(tmp_path, lambda: plan.steps)
    assert a == b
    rows = [json.loads(line) for line in a.decode().splitlines()]
    assert rows, "the tiny model wrote nothing"
    for row in rows:
        assert row["text"].strip() and row["parent"] in ("s0", "s1", "s2")
        assert row["params"]["generator"] == "hf" and row["params"]["model"] == str(tiny_llama)
        assert row["method"] in (
            "spacy-distill.Paraphrase.v1",
            "spacy-distill.LLMBackTranslation.v1",
        )
    assert len({r["text"] for r in rows}) == len(rows)
    assert {r["method"] for r in rows} == {
        "spacy-distill.Paraphrase.v1",
        "spacy-distill.LLMBackTranslation.v1",
    }
    # Another seed samples other answers.
    augment_file(
        tmp_path / "seeds.jsonl", tmp_path / "c.jsonl", plan.steps, seed=1, show_progress=False
    )
    assert (tmp_path / "c.jsonl").read_bytes() != a


def test_seq2seq_back_translation(tmp_path, tiny_bart_pair):
    build = registry.text_augmenters.get("spacy-distill.BackTranslation.v1")
    forward, backward = tiny_bart_pair

    def steps():
        return {
            "bt": build(
                forward_model=str(forward),
                backward_model=str(backward),
                n=2,
                max_length=16,
                device="cpu",
            )
        }

    a, b = _run_twice(tmp_path, steps)
    assert a == b
    rows = [json.loads(line) for line in a.decode().splitlines()]
    assert rows, "the tiny models wrote nothing"
    for row in rows:
        assert row["method"] == "spacy-distill.BackTranslation.v1" and row["parent"].startswith("s")
        assert row["params"]["forward_model"] == str(forward)
    augmenter = steps()["bt"]
    assert augmenter.augment("", random.Random(0), 2) == []
    assert isinstance(augmenter.augment("😀 Привет", random.Random(0), 2), list)


def test_masked_lm_replacement(tmp_path, tiny_bert):
    build = registry.text_augmenters.get("spacy-distill.MaskedLM.v1")
    augmenter = build(model=str(tiny_bert), n=3, rate=0.5, top_k=5, device="cpu")
    text = "the film was great and the actors were wonderful"
    first = augmenter.augment(text, derive_rng(0, "mlm", "x"), 3)
    assert first == augmenter.augment(text, derive_rng(0, "mlm", "x"), 3) and first
    for variant in first:
        words, original = variant.split(), text.split()
        assert len(words) == len(original)
        for new, old in zip(words, original):
            assert new == old or (new.isalpha() and new in augmenter.word_of.values())
    assert augmenter.augment("", random.Random(0), 2) == []
    assert augmenter.augment("😀🎉", random.Random(0), 2) == []
    assert isinstance(augmenter.augment("Привет мир", random.Random(0), 2), list)
    # Contraction pieces are never masked, whatever the rate.
    every = build(model=str(tiny_bert), n=1, rate=1.0, top_k=5, device="cpu")
    for seed in range(5):
        for variant in every.augment(
            "i don't think it 's good , ai n't it", random.Random(seed), 1
        ):
            assert "don't" in variant and "'s" in variant and "n't" in variant
    a, b = _run_twice(tmp_path, lambda: {"mlm": augmenter})
    assert (
        a == b
        and a
        and json.loads(a.decode().splitlines()[0])["params"]
        == {"model": str(tiny_bert), "rate": 0.5, "top_k": 5}
    )


def test_embedding_synonyms_are_cosine_neighbours(tiny_bert):
    build = registry.text_augmenters.get("spacy-distill.EmbeddingSynonyms.v1")
    augmenter = build(model=str(tiny_bert), n=2, rate=1.0, top_k=3, min_similarity=-1.0)
    assert "film" in augmenter.words and not any(w.startswith("#") for w in augmenter.words)
    model = transformers.AutoModel.from_pretrained(tiny_bert)
    emb = model.get_input_embeddings().weight.detach().numpy()
    vocab = dict(zip(augmenter.words, augmenter.word_ids))
    query = emb[vocab["film"]]
    sims = {
        w: float(emb[i] @ query / numpy.linalg.norm(emb[i]) / numpy.linalg.norm(query))
        for w, i in vocab.items()
        if w != "film"
    }
    expected = sorted(sims, key=lambda w: -sims[w])[:3]
    assert augmenter.neighbours("Film") == expected
    variants = augmenter.augment("the Film", random.Random(0), 2)
    assert variants and all(v.split()[1].lower() in augmenter.words for v in variants)
    assert augmenter.augment("😀", random.Random(0), 2) == []


class _StubHandler(BaseHTTPRequestHandler):
    requests = []

    def log_message(self, *args):
        pass

    def do_POST(self):
        payload = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).requests.append((self.path, payload))
        prompt = payload["messages"][-1]["content"] if "messages" in payload else payload["prompt"]
        text = prompt.split("Text: ", 1)[1].split("\n", 1)[0] if "Text: " in prompt else prompt
        # seed % 4: 0 -> echo, 1 -> empty, 2 and 3 -> two answers (each twice across seeds).
        kind = payload["seed"] % 4
        answer = {
            0: text,
            1: "  ",
            2: f'"Rewritten text: {text} indeed"',
            3: f"{text}, really\nsecond line",
        }[kind]
        if "messages" in payload:
            body = {
                "choices": [
                    {"message": {"role": "assistant", "content": answer}, "finish_reason": "stop"}
                ]
            }
        else:
            body = {"choices": [{"text": answer, "finish_reason": "stop"}]}
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def stub_server():
    _StubHandler.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _StubHandler)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("endpoint", ["chat", "completions"])
def test_openai_generator_paraphrases_through_a_server(tmp_path, stub_server, endpoint):
    pytest.importorskip("httpx")
    build_generator = registry.misc.get("spacy-distill.OpenAIGenerator.v1")

    def steps():
        generator = build_generator(
            base_url=stub_server, model="stub", endpoint=endpoint, max_concurrency=2, max_retries=0
        )
        return {"para": Paraphrase(generator, n=4, attempts=1)}

    a, b = _run_twice(tmp_path, steps)
    assert a == b
    rows = [json.loads(line) for line in a.decode().splitlines()]
    by_parent = {}
    for row in rows:
        by_parent.setdefault(row["parent"], []).append(row["text"])
        assert (
            row["params"]["generator"] == "openai" and row["params"]["url"] == stub_server + "/v1"
        )
    # Each seed: 4 requests with seeds s..s+3 give one echo, one empty, and two real answers.
    for i, seed_text in enumerate(SEEDS):
        assert sorted(by_parent[f"s{i}"]) == sorted([f"{seed_text} indeed", f"{seed_text}, really"])
    paths = {path for path, _ in _StubHandler.requests}
    assert paths == {"/v1/chat/completions" if endpoint == "chat" else "/v1/completions"}
    payload = _StubHandler.requests[0][1]
    assert payload["model"] == "stub" and payload["temperature"] == 0.9 and "seed" in payload
