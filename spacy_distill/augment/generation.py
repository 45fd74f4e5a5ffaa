"""Text generators for the LLM-based augmenters: a local Hugging Face causal LM
(`spacy-distill.HFGenerator.v1`) or any OpenAI-compatible server
(`spacy-distill.OpenAIGenerator.v1`), registered in spaCy's `misc` registry and used as the
`generator` sub-block of `Paraphrase`, `LabelExamples` and `LLMBackTranslation`.

A generator answers `generate(prompt, n, seed)` with n sampled answers. Model loading is the
teachers' (`hf/loading.py`); HTTP (retries, backoff, the API key read from an
environment variable and never stored, answer parsing) is `teachers/openai_client.py`'s.
Sampling is seeded: the HF generator seeds torch before each call; the server generator sends
`seed = seed + i` with request i (servers that honour `seed`, as vLLM and llama.cpp do, answer
the same way every run; at temperature 0 any server does).
"""

from typing import Any, Dict, List, Optional

from ..errors import DistillError
from ..registry import registry


class HFGenerator:
    """Samples answers from a local causal LM (chat template used when the tokenizer has one)."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        model_name: str = "model",
        use_chat_template: Optional[bool] = None,
        system_prompt: Optional[str] = None,
        max_new_tokens: int = 64,
        temperature: float = 0.9,
        top_p: float = 0.95,
    ) -> None:
        from ..hf.loading import require_transformers

        self._torch, _ = require_transformers()
        self.model = model
        self.tokenizer = tokenizer
        self.model_name = model_name
        has_chat = bool(getattr(tokenizer, "chat_template", None))
        if use_chat_template and not has_chat:
            raise DistillError(
                f"{model_name}: use_chat_template = true, but its tokenizer has no chat template"
            )
        self.use_chat_template = has_chat if use_chat_template is None else bool(use_chat_template)
        self.system_prompt = system_prompt
        self.max_new_tokens = int(max_new_tokens)
        self.temperature = float(temperature)
        self.top_p = float(top_p)

    @property
    def params(self) -> Dict[str, Any]:
        return {
            "generator": "hf",
            "model": self.model_name,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "max_new_tokens": self.max_new_tokens,
        }

    def render(self, prompt: str) -> str:
        if not self.use_chat_template:
            return prompt
        messages = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
        messages.append({"role": "user", "content": prompt})
        return self.tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True
        )

    def generate(
        self, prompt: str, n: int, seed: int, temperature: Optional[float] = None
    ) -> List[str]:
        """n answers to a prompt (temperature 0: one greedy answer, repeated)."""
        torch = self._torch
        temperature = self.temperature if temperature is None else temperature
        encoded = self.tokenizer(
            self.render(prompt), return_tensors="pt", add_special_tokens=not self.use_chat_template
        ).to(self.model.device)
        pad = (
            self.tokenizer.pad_token_id
            if self.tokenizer.pad_token_id is not None
            else self.tokenizer.eos_token_id
        )
        kwargs: Dict[str, Any] = {"max_new_tokens": self.max_new_tokens, "pad_token_id": pad}
        if temperature > 0:
            kwargs.update(
                do_sample=True, temperature=temperature, top_p=self.top_p, num_return_sequences=n
            )
        else:
            kwargs.update(do_sample=False)
        # Only these two: some tokenizers add token_type_ids, which causal LMs reject.
        inputs = {key: encoded[key] for key in ("input_ids", "attention_mask") if key in encoded}
        torch.manual_seed(seed)
        with torch.no_grad():
            out = self.model.generate(**inputs, **kwargs)
        start = encoded["input_ids"].shape[1]
        answers = [self.tokenizer.decode(row[start:], skip_special_tokens=True) for row in out]
        return answers if temperature > 0 else answers * n


class OpenAIGenerator:
    """Samples answers from an OpenAI-compatible server, through the shared `OpenAIClient`."""

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key_env: Optional[str] = None,
        endpoint: str = "chat",
        system_prompt: Optional[str] = None,
        max_new_tokens: int = 64,
        temperature: float = 0.9,
        top_p: float = 0.95,
        max_concurrency: int = 8,
        timeout: float = 60.0,
        max_retries: int = 5,
        backoff: float = 1.0,
    ) -> None:
        """A model behind an OpenAI-compatible server that writes texts.

        base_url (str): e.g. "http://localhost:8000/v1".
        model (str): the model name the server expects.
        api_key_env (Optional[str]): the NAME of the environment variable holding the API key.
        endpoint (str): "chat" or "completions".
        system_prompt (Optional[str]): a system message (chat endpoint).
        max_new_tokens (int): the longest answer, in tokens.
        temperature (float): sampling temperature.
        top_p (float): nucleus sampling mass.
        max_concurrency (int): requests in flight.
        timeout (float): each request's total deadline, in seconds.
        max_retries (int): retries on 429/5xx/timeouts.
        backoff (float): the first retry's wait in seconds.
        """
        from ..teachers.openai_client import OpenAIClient

        # Posts with retries and backoff, reads the key from the environment at each request,
        # and shows answers redacted in its errors, never the key.
        self.client = OpenAIClient.from_settings(base_url, model, locals())
        self.model = model
        self.endpoint = endpoint
        self.system_prompt = system_prompt
        self.max_new_tokens = int(max_new_tokens)
        self.temperature = float(temperature)
        self.top_p = float(top_p)
        self.max_concurrency = int(max_concurrency)

    @property
    def params(self) -> Dict[str, Any]:
        return {
            "generator": "openai",
            "model": self.model,
            "url": self.client.base_url,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "max_new_tokens": self.max_new_tokens,
        }

    def _payload(self, prompt: str, seed: int, temperature: float) -> Dict[str, Any]:
        payload: Dict[str, Any] = {
            "model": self.model,
            "max_tokens": self.max_new_tokens,
            "temperature": temperature,
            "seed": seed,
        }
        if temperature > 0:
            payload["top_p"] = self.top_p
        if self.endpoint == "chat":
            messages = (
                [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
            )
            payload["messages"] = messages + [{"role": "user", "content": prompt}]
        else:
            payload["prompt"] = prompt
        return payload

    def generate(
        self, prompt: str, n: int, seed: int, temperature: Optional[float] = None
    ) -> List[str]:
        """n answers to a prompt, request i sent with seed `seed + i`; in the order of i."""
        from ..teachers.openai_client import Request

        temperature = self.temperature if temperature is None else temperature
        requests = [
            Request(
                self._payload(prompt, seed + i, temperature), f"generation request {i + 1} of {n}"
            )
            for i in range(n)
        ]
        # An unreadable answer is retried; the first failure cancels the other requests.
        return self.client.post_all(requests, self.client.answer_text)


@registry.misc("spacy-distill.HFGenerator.v1")
def configure_hf_generator(
    model: str,
    use_chat_template: Optional[bool] = None,
    system_prompt: Optional[str] = None,
    max_new_tokens: int = 64,
    temperature: float = 0.9,
    top_p: float = 0.95,
    gguf_file: Optional[str] = None,
    revision: Optional[str] = None,
    device: str = "auto",
    dtype: str = "auto",
) -> HFGenerator:
    """A local causal LM that writes texts.

    model (str): a hub name, a local folder, or a path to a .gguf file.
    use_chat_template (Optional[bool]): wrap prompts in the tokenizer's chat template (None: when it has one).
    system_prompt (Optional[str]): a system message (chat template only).
    max_new_tokens (int): the longest answer, in tokens.
    temperature (float): sampling temperature (0: greedy).
    top_p (float): nucleus sampling mass.
    gguf_file, revision, device, dtype: as for `spacy-distill.HFPromptTeacher.v1`.
    RETURNS (HFGenerator): the generator.
    """
    from ..hf.loading import load_causal_lm

    lm, tokenizer, name, gguf_file = load_causal_lm(
        model, gguf_file=gguf_file, revision=revision, dtype=dtype, device=device
    )
    return HFGenerator(
        lm,
        tokenizer,
        model_name=name + (f"/{gguf_file}" if gguf_file else ""),
        use_chat_template=use_chat_template,
        system_prompt=system_prompt,
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        top_p=top_p,
    )


configure_openai_generator = registry.misc("spacy-distill.OpenAIGenerator.v1")(OpenAIGenerator)
