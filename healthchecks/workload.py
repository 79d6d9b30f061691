"""Benchmark workloads, sampled as ``vllm bench serve`` samples them (vllm/benchmarks/datasets/datasets.py).

Four datasets (``--dataset-name``):

``random``             per-request input/output lengths drawn as vLLM's ``get_sampling_params`` draws them
                       (``np.random.default_rng(seed)``; ``--range-ratio`` widens input *and* output lengths to
                       ``[floor(len*(1-R)), ceil(len*(1+R))]``); ``ignore_eos`` on by default, as in vLLM.
``custom``             JSONL, one ``{"prompt": "...", "output_tokens": N?}`` per line (vLLM's CustomDataset).
``sharegpt``           a ShareGPT JSON file (``[{"conversations": [{"value": prompt}, {"value": answer}]}]``);
                       the answer's token count is the request's output length, pruned by vLLM's
                       ``is_valid_sequence`` (4 <= prompt <= 1024 tokens, prompt + output <= 2048).
``prefix_repetition``  ``--num-prefixes`` shared prefixes of ``--prefix-len`` tokens, each followed by
                       ``N // num_prefixes`` distinct suffixes of ``--suffix-len`` tokens: shows prefix caching.

Order: ``custom``, ``sharegpt`` and ``prefix_repetition`` are shuffled with Python's ``random.seed(seed)`` +
``random.shuffle`` before the first N are taken (``--disable-shuffle`` keeps file order), and a file shorter
than N is oversampled with ``random.seed(seed)`` + ``random.choice``: the same seed gives the same request order
as vLLM.

Token-exact prompts: lengths count the *serving engine's* tokens. Each endpoint's prompts are built through a
:class:`Tokenizer`: the engine's own ``/tokenize`` + ``/detokenize`` (vLLM, llama-server), else a local
``--tokenizer`` (a ``tokenizer.json`` through the ``tokenizers`` library, or a model's ``.gguf``), else whole
words (one word is roughly one token; the CLI prints a warning). Text is seeded words, cut to exactly N tokens
and re-encoded (vLLM's ``gen_prompt_decode_to_target_len``: decode, re-encode, pad or trim, 10 tries).
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Protocol

import numpy as np

from .errors import ConfigError

DATASETS = ("random", "custom", "sharegpt", "prefix_repetition")
VOCAB = (
    "time person year way day thing man world life hand part child eye woman place work week case point "
    "government company number group problem fact water light river mountain engine model server token "
    "memory answer question system network cluster graph kernel driver"
).split()
MAX_TRIES = 10  # vLLM's gen_prompt_decode_to_target_len max_retry


@dataclass(frozen=True)
class SampleRequest:
    """One request of the workload: the prompt, its length in the engine's tokens (None: not known, the
    server's usage will tell) and the output length asked for."""

    prompt: str
    prompt_len: int | None
    expected_output_len: int


class Tokenizer(Protocol):
    name: str

    async def encode(self, text: str) -> list[int]: ...

    async def decode(self, ids: list[int]) -> str: ...


class FunctionTokenizer:
    """A tokenizer from two async functions (an engine's /tokenize and /detokenize)."""

    def __init__(self, name: str, encode: Callable[[str], Awaitable[list[int] | None]],
                 decode: Callable[[list[int]], Awaitable[str | None]]) -> None:
        self.name = name
        self._encode, self._decode = encode, decode

    async def encode(self, text: str) -> list[int]:
        ids = await self._encode(text)
        if ids is None:
            raise ConfigError(f"{self.name}: no tokenizer endpoint")
        return ids

    async def decode(self, ids: list[int]) -> str:
        text = await self._decode(ids)
        if text is None:
            raise ConfigError(f"{self.name}: no detokenizer endpoint")
        return text


class LocalTokenizer:
    """A ``tokenizers`` tokenizer loaded from ``tokenizer.json`` (a file, or a model folder holding one) or
    built from a GGUF file's vocabulary (``tokenizer.ggml.*``; BPE models such as gpt2/llama-bpe/smollm)."""

    def __init__(self, path: str) -> None:
        try:
            from tokenizers import Tokenizer as HfTokenizer
        except ImportError:  # pragma: no cover - a declared dependency
            raise ConfigError("--tokenizer needs the 'tokenizers' package (pip install tokenizers)") from None
        p = Path(path)
        if p.is_dir():
            p = p / "tokenizer.json"
        self.name = f"local {p.name}"
        try:
            if p.suffix == ".gguf":
                self._tok = _gguf_tokenizer(p)
            else:
                self._tok = HfTokenizer.from_file(str(p))
        except OSError as exc:
            raise ConfigError(f"--tokenizer {path}: {exc.strerror or exc}") from None
        except Exception as exc:  # the tokenizers library raises plain Exceptions for bad files
            raise ConfigError(f"--tokenizer {path}: not a tokenizer.json or GGUF tokenizer "
                              f"({str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__})") from None

    async def encode(self, text: str) -> list[int]:
        return list(self._tok.encode(text, add_special_tokens=False).ids)

    async def decode(self, ids: list[int]) -> str:
        return str(self._tok.decode(ids, skip_special_tokens=False))


# -- GGUF: the tokenizer stored in the model file (GGUF v2/v3 key-value header) -------------------------------
_GGUF_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q",
                 12: "<d"}


def _gguf_read(f: BinaryIO, fmt: str) -> Any:
    size = struct.calcsize(fmt)
    data = f.read(size)
    if len(data) != size:
        raise ValueError("GGUF header cut short")
    return struct.unpack(fmt, data)[0]


def _gguf_string(f: BinaryIO) -> str:
    n = _gguf_read(f, "<Q")
    return f.read(n).decode("utf-8", errors="replace")


def _gguf_value(f: BinaryIO, kind: int, *, keep: bool) -> Any:
    if kind in _GGUF_SCALARS:
        return _gguf_read(f, _GGUF_SCALARS[kind])
    if kind == 8:
        return _gguf_string(f)
    if kind == 9:
        item, n = _gguf_read(f, "<I"), _gguf_read(f, "<Q")
        if not keep and item in _GGUF_SCALARS:  # skip big numeric arrays without decoding them
            f.seek(n * struct.calcsize(_GGUF_SCALARS[item]), 1)
            return None
        return [_gguf_value(f, item, keep=keep) for _ in range(n)]
    raise ValueError(f"unknown GGUF value type {kind}")


def gguf_metadata(path: Path, prefix: str = "tokenizer.") -> dict[str, Any]:
    """The GGUF key-value metadata whose keys start with ``prefix`` (tensors are not read)."""
    out: dict[str, Any] = {}
    with path.open("rb") as f:
        if f.read(4) != b"GGUF":
            raise ValueError("not a GGUF file")
        version = _gguf_read(f, "<I")
        if version < 2:
            raise ValueError(f"GGUF version {version} is too old")
        _gguf_read(f, "<Q")  # tensor count
        for _ in range(_gguf_read(f, "<Q")):
            key = _gguf_string(f)
            kind = _gguf_read(f, "<I")
            value = _gguf_value(f, kind, keep=key.startswith(prefix))
            if key.startswith(prefix):
                out[key] = value
    return out


def _gguf_tokenizer(path: Path) -> Any:
    from tokenizers import Tokenizer as HfTokenizer
    from tokenizers import decoders, models, pre_tokenizers

    meta = gguf_metadata(path)
    kind = meta.get("tokenizer.ggml.model")
    tokens, merges = meta.get("tokenizer.ggml.tokens"), meta.get("tokenizer.ggml.merges")
    if kind != "gpt2" or not isinstance(tokens, list) or not isinstance(merges, list):
        raise ValueError(f"GGUF tokenizer model {kind!r} is not a byte-level BPE (gpt2); pass tokenizer.json")
    vocab = {t: i for i, t in enumerate(tokens)}
    pairs = [tuple(m.split(" ", 1)) for m in merges if " " in m]
    tok = HfTokenizer(models.BPE(vocab, pairs, fuse_unk=False))
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                                 pre_tokenizers.ByteLevel(add_prefix_space=False)])
    tok.decoder = decoders.ByteLevel()
    return tok


# -- lengths and text ---------------------------------------------------------------------------------------
def sampling_lengths(seed: int, n: int, input_len: int, output_len: int,
                     range_ratio: float) -> tuple[list[int], list[int]]:
    """vLLM's ``get_sampling_params`` (datasets/utils.py): integer-uniform input and output lengths around the
    means, from ``np.random.default_rng(seed)``; the same seed gives vLLM's lengths (tokenizers that add no
    special tokens)."""
    rng = np.random.default_rng(seed)
    in_lo, in_hi = math.floor(input_len * (1 - range_ratio)), math.ceil(input_len * (1 + range_ratio))
    out_lo = max(math.floor(output_len * (1 - range_ratio)), 1)
    out_hi = max(math.ceil(output_len * (1 + range_ratio)), 1)
    if in_lo < 1:
        raise ConfigError(f"--input-len {input_len} with --range-ratio {range_ratio} allows prompts of "
                          f"{in_lo} tokens: raise --input-len or lower --range-ratio")
    ins = rng.integers(in_lo, in_hi + 1, size=n)
    outs = rng.integers(out_lo, out_hi + 1, size=n)
    return [int(x) for x in ins], [int(x) for x in outs]


def words(seed: int, tag: str, index: int, n: int) -> str:
    """n seeded words (the same for every engine: a request's text does not depend on its tokenizer)."""
    rng = np.random.default_rng([seed, sum(map(ord, tag)), index])
    return " ".join(rng.choice(VOCAB, size=max(n, 1)))


async def exact_text(tok: Tokenizer, seed: int, tag: str, index: int, n: int) -> tuple[str, int]:
    """Seeded words cut to exactly ``n`` tokens of ``tok``: (text, its token count). vLLM's
    gen_prompt_decode_to_target_len loop: decode, re-encode, pad with more words or trim, up to 10 tries."""
    extra = 0
    text = words(seed, tag, index, n + 2)
    ids = await tok.encode(text)
    for _ in range(MAX_TRIES):
        if len(ids) < n:
            extra += n - len(ids) + 2
            text = words(seed, tag, index, n + 2 + extra)
            ids = await tok.encode(text)
            continue
        text = await tok.decode(ids[:n])
        ids = await tok.encode(text)
        if len(ids) == n:
            break
    return text, len(ids)


def is_valid_sequence(prompt_len: int, output_len: int, min_len: int = 4, max_prompt_len: int = 1024,
                      max_total_len: int = 2048, *, skip_min_output_len_check: bool = False) -> bool:
    """vLLM's pruning rule for ShareGPT conversations (datasets.py, ``is_valid_sequence``)."""
    return not (prompt_len < min_len or (not skip_min_output_len_check and output_len < min_len)
                or prompt_len > max_prompt_len or prompt_len + output_len > max_total_len)


@dataclass
class WorkloadSpec:
    """Everything that decides the requests; files are read and checked when this is made (before any
    request), token-dependent sampling happens per endpoint in :meth:`build`."""

    dataset_name: str = "random"
    num_prompts: int = 1
    seed: int = 0
    input_len: int = 64
    output_len: int | None = None  # None: the dataset's own (random: 64; custom: output_tokens, else 64)
    range_ratio: float = 0.0
    prefix_len: int = 64
    suffix_len: int = 64
    num_prefixes: int = 4
    dataset_path: str | None = None
    disable_shuffle: bool = False
    rows: list[dict[str, Any]] = field(default_factory=list)  # custom: {"prompt", "output_tokens"?}

    DEFAULT_OUTPUT_LEN = 64

    def __post_init__(self) -> None:
        if self.dataset_name not in DATASETS:
            raise ConfigError(f"--dataset-name {self.dataset_name}: expected one of {', '.join(DATASETS)}")
        if self.dataset_name in ("custom", "sharegpt") and not self.dataset_path:
            raise ConfigError(f"--dataset-name {self.dataset_name} needs --dataset-path FILE")
        if self.dataset_name in ("random", "prefix_repetition") and self.dataset_path:
            raise ConfigError(f"--dataset-name {self.dataset_name} takes no --dataset-path "
                              "(use --dataset-name custom or sharegpt for a file)")
        if not 0 <= self.range_ratio < 1:
            raise ConfigError(f"--range-ratio must be in [0, 1), not {self.range_ratio}")
        if self.dataset_name == "random":
            sampling_lengths(self.seed, 1, self.input_len, self.out_len, self.range_ratio)  # checks the bounds
        if self.dataset_name == "prefix_repetition" and self.num_prompts < self.num_prefixes:
            raise ConfigError(f"--num-prompts {self.num_prompts} must be at least --num-prefixes "
                              f"{self.num_prefixes}")
        if self.dataset_name == "custom":
            self.rows = load_custom(str(self.dataset_path))
        elif self.dataset_name == "sharegpt":
            self.rows = load_sharegpt(str(self.dataset_path))

    @property
    def out_len(self) -> int:
        return self.output_len if self.output_len is not None else self.DEFAULT_OUTPUT_LEN

    @property
    def default_ignore_eos(self) -> bool:
        return self.dataset_name == "random"  # vLLM: random datasets run to the requested length

    @property
    def needs_tokenizer(self) -> bool:
        return self.dataset_name in ("random", "sharegpt", "prefix_repetition")

    def _shuffled(self, items: list[Any]) -> list[Any]:
        items = list(items)
        if not self.disable_shuffle:
            random.Random(self.seed).shuffle(items)  # random.seed(seed); random.shuffle(data)
        return items

    def _oversample(self, reqs: list[SampleRequest]) -> list[SampleRequest]:
        if reqs and len(reqs) < self.num_prompts:
            rng = random.Random(self.seed)  # maybe_oversample_requests: random.seed(seed); random.choice
            reqs = reqs + [rng.choice(reqs) for _ in range(self.num_prompts - len(reqs))]
        return reqs

    async def build(self, tok: Tokenizer | None, concurrency: int = 16) -> list[SampleRequest]:
        """The workload's requests for one endpoint; ``tok`` None: words stand in for tokens."""
        sem = asyncio.Semaphore(concurrency)

        async def exact(tag: str, i: int, n: int) -> tuple[str, int | None]:
            if tok is None:
                return words(self.seed, tag, i, n), None
            async with sem:
                return await exact_text(tok, self.seed, tag, i, n)

        n = self.num_prompts
        if self.dataset_name == "random":
            ins, outs = sampling_lengths(self.seed, n, self.input_len, self.out_len, self.range_ratio)
            texts = await asyncio.gather(*(exact("random", i, k) for i, k in enumerate(ins)))
            return [SampleRequest(t, k, o) for (t, k), o in zip(texts, outs, strict=True)]
        if self.dataset_name == "custom":
            rows = self._shuffled(self.rows)[:n]
            reqs = [SampleRequest(r["prompt"], None,
                                  self.output_len if self.output_len is not None
                                  else int(r.get("output_tokens") or self.DEFAULT_OUTPUT_LEN)) for r in rows]
            return self._oversample(reqs)
        if self.dataset_name == "sharegpt":
            return await self._sharegpt(tok, sem)
        return await self._prefix_repetition(tok, exact)

    async def _sharegpt(self, tok: Tokenizer | None, sem: asyncio.Semaphore) -> list[SampleRequest]:
        async def count(text: str) -> int:
            if tok is None:
                return len(text.split())
            async with sem:
                return len(await tok.encode(text))

        reqs: list[SampleRequest] = []
        for row in self._shuffled(self.rows):
            if len(reqs) >= self.num_prompts:
                break
            prompt, answer = row["prompt"], row["answer"]
            p_len = await count(prompt)
            o_len = self.output_len if self.output_len is not None else await count(answer)
            if not is_valid_sequence(p_len, o_len, skip_min_output_len_check=self.output_len is not None):
                continue
            reqs.append(SampleRequest(prompt, p_len if tok is not None else None, o_len))
        if not reqs:
            raise ConfigError(f"--dataset-path {self.dataset_path}: no conversation passes vLLM's length "
                              "filter (prompt 4..1024 tokens, prompt + answer <= 2048)")
        return self._oversample(reqs)

    async def _prefix_repetition(self, tok: Tokenizer | None,
                                 exact: Callable[[str, int, int], Awaitable[tuple[str, int | None]]]
                                 ) -> list[SampleRequest]:
        per = self.num_prompts // self.num_prefixes
        prefixes = await asyncio.gather(*(exact("prefix", j, self.prefix_len) for j in range(self.num_prefixes)))
        suffixes = await asyncio.gather(*(exact("suffix", i, self.suffix_len)
                                          for i in range(per * self.num_prefixes)))
        reqs = []
        for j, (p_text, p_len) in enumerate(prefixes):
            for k in range(per):
                s_text, s_len = suffixes[j * per + k]
                length = None if p_len is None or s_len is None else p_len + s_len
                reqs.append(SampleRequest(p_text + " " + s_text.lstrip(), length, self.out_len))
        if tok is not None:  # the joint is re-measured: the prompt's own token count is its length
            lens = await asyncio.gather(*(tok.encode(r.prompt) for r in reqs))
            reqs = [SampleRequest(r.prompt, len(ids), r.expected_output_len) for r, ids in zip(reqs, lens, strict=True)]
        return self._shuffled(reqs)


def load_custom(path: str) -> list[dict[str, Any]]:
    """vLLM's custom JSONL: every line an object with a non-empty "prompt" and an optional integer
    "output_tokens"."""
    lines = _read(path).splitlines()
    rows = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError:
            raise ConfigError(f"--dataset-path {path}:{n}: not a JSON line") from None
        if not isinstance(obj, dict) or not isinstance(obj.get("prompt"), str) or not obj["prompt"]:
            raise ConfigError(f'--dataset-path {path}:{n}: expected {{"prompt": "...", "output_tokens": N}}')
        out = obj.get("output_tokens")
        if out is not None and (isinstance(out, bool) or not isinstance(out, int) or out < 1):
            raise ConfigError(f"--dataset-path {path}:{n}: output_tokens must be a positive integer, not {out!r}")
        rows.append({"prompt": obj["prompt"], "output_tokens": out})
    if not rows:
        raise ConfigError(f"--dataset-path {path} has no prompts")
    return rows


def load_sharegpt(path: str) -> list[dict[str, Any]]:
    """A ShareGPT file: a JSON list of {"conversations": [{"from": "human", "value": ...}, {"from": "gpt",
    "value": ...}, ...]}; entries with fewer than two turns are dropped (as vLLM does)."""
    try:
        data = json.loads(_read(path))
    except ValueError as exc:
        raise ConfigError(f"--dataset-path {path}: not JSON ({exc})") from None
    if not isinstance(data, list):
        raise ConfigError(f"--dataset-path {path}: a ShareGPT file is a JSON list of conversations")
    rows = []
    for entry in data:
        conv = entry.get("conversations") if isinstance(entry, dict) else None
        if not isinstance(conv, list) or len(conv) < 2:
            continue
        turns = [t.get("value") if isinstance(t, dict) else None for t in conv[:2]]
        if all(isinstance(t, str) for t in turns):
            rows.append({"prompt": turns[0], "answer": turns[1]})
    if not rows:
        raise ConfigError(f"--dataset-path {path}: no conversation with two turns "
                          '({"conversations": [{"value": prompt}, {"value": answer}]})')
    return rows


def _read(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"--dataset-path {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"--dataset-path {path}: not UTF-8 text") from None
