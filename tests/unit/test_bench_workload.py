"""Workloads as vLLM samples them: order (random.seed + shuffle), oversampling, ShareGPT pruning, prefix
repetition, token-exact text through a tokenizer (a tokenizer.json and a GGUF file written here)."""

from __future__ import annotations

import asyncio
import json
import random
import struct
from pathlib import Path

import pytest

from healthchecks.errors import ConfigError
from healthchecks.workload import VOCAB, LocalTokenizer, WorkloadSpec, exact_text, gguf_metadata, sampling_lengths

pytestmark = pytest.mark.unit


def _bpe_tokenizer_json(path: Path) -> None:
    """A small byte-level BPE tokenizer trained on the workload's own vocabulary (no download)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator([" ".join(VOCAB[i:] + VOCAB[:i]) for i in range(len(VOCAB))] * 3, trainer)
    tok.save(str(path))


def _write_gguf(path: Path, tokens: list[str], merges: list[str]) -> None:
    def s(text: str) -> bytes:
        b = text.encode()
        return struct.pack("<Q", len(b)) + b

    kv = [(s("general.architecture") + struct.pack("<I", 8) + s("llama")),
          (s("llama.context_length") + struct.pack("<I", 4) + struct.pack("<I", 2048)),
          (s("tokenizer.ggml.model") + struct.pack("<I", 8) + s("gpt2")),
          (s("tokenizer.ggml.tokens") + struct.pack("<IIQ", 9, 8, len(tokens)) + b"".join(s(t) for t in tokens)),
          (s("tokenizer.ggml.token_type") + struct.pack("<IIQ", 9, 5, len(tokens))
           + b"".join(struct.pack("<i", 1) for _ in tokens)),
          (s("tokenizer.ggml.merges") + struct.pack("<IIQ", 9, 8, len(merges)) + b"".join(s(m) for m in merges))]
    path.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 0, len(kv)) + b"".join(kv))


@pytest.fixture(scope="module")
def tokenizer_json(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tok") / "tokenizer.json"
    _bpe_tokenizer_json(path)
    return path


def test_sampling_lengths_follow_vllm_bounds() -> None:
    ins, outs = sampling_lengths(0, 2000, 100, 10, 0.25)
    assert min(ins) == 75 and max(ins) == 125 and min(outs) == 7 and max(outs) == 13  # floor/ceil, inclusive
    assert sampling_lengths(0, 5, 100, 10, 0.0) == ([100] * 5, [10] * 5)
    with pytest.raises(ConfigError, match="allows prompts of 0 tokens"):
        sampling_lengths(0, 1, 1, 1, 0.5)


def test_exact_token_counts_with_a_local_tokenizer(tokenizer_json: Path) -> None:
    tok = LocalTokenizer(str(tokenizer_json))

    async def check() -> None:
        for n in (1, 3, 17, 64, 200):
            text, got = await exact_text(tok, 5, "random", n, n)
            assert got == n and len(await tok.encode(text)) == n

    asyncio.run(check())
    spec = WorkloadSpec(num_prompts=20, input_len=30, range_ratio=0.5, seed=2)
    reqs = asyncio.run(spec.build(tok))
    want, _ = sampling_lengths(2, 20, 30, spec.out_len, 0.5)
    assert [r.prompt_len for r in reqs] == want
    assert [len(asyncio.run(tok.encode(r.prompt))) for r in reqs] == want


def test_gguf_tokenizer_equals_its_tokenizer_json(tokenizer_json: Path, tmp_path: Path) -> None:
    model = json.loads(tokenizer_json.read_text())["model"]
    vocab = sorted(model["vocab"].items(), key=lambda kv: kv[1])
    merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
    gguf = tmp_path / "m.gguf"
    _write_gguf(gguf, [t for t, _ in vocab], merges)
    meta = gguf_metadata(gguf)
    assert meta["tokenizer.ggml.model"] == "gpt2" and len(meta["tokenizer.ggml.tokens"]) == len(vocab)
    a, b = LocalTokenizer(str(tokenizer_json)), LocalTokenizer(str(gguf))
    text = " ".join(VOCAB) + " model servers hum"
    assert asyncio.run(a.encode(text)) == asyncio.run(b.encode(text))
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF\x03\x00")
    with pytest.raises(ConfigError, match="--tokenizer"):
        LocalTokenizer(str(bad))


def test_custom_dataset_order_is_vllms(tmp_path: Path) -> None:
    ds = tmp_path / "d.jsonl"
    rows = [{"prompt": f"p{i}", **({"output_tokens": i + 1} if i % 2 else {})} for i in range(10)]
    ds.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    shuffled = list(range(10))
    random.seed(3)  # vLLM's CustomDataset.load_data: random.seed(seed); random.shuffle(self.data)
    random.shuffle(shuffled)
    reqs = asyncio.run(WorkloadSpec("custom", num_prompts=6, seed=3, dataset_path=str(ds)).build(None))
    assert [r.prompt for r in reqs] == [f"p{i}" for i in shuffled[:6]]
    assert [r.expected_output_len for r in reqs] == [i + 1 if i % 2 else 64 for i in shuffled[:6]]
    kept = asyncio.run(WorkloadSpec("custom", num_prompts=3, seed=3, dataset_path=str(ds), disable_shuffle=True,
                                    output_len=9).build(None))
    assert [(r.prompt, r.expected_output_len) for r in kept] == [("p0", 9), ("p1", 9), ("p2", 9)]
    # oversampling: random.seed(seed) then random.choice per missing request (maybe_oversample_requests)
    many = asyncio.run(WorkloadSpec("custom", num_prompts=13, seed=3, dataset_path=str(ds)).build(None))
    base = [f"p{i}" for i in shuffled]
    rng = random.Random(3)
    assert [r.prompt for r in many] == base + [rng.choice(base) for _ in range(3)]


def test_sharegpt_pairs_pruned_as_vllm(tmp_path: Path) -> None:
    conv = [{"conversations": [{"from": "human", "value": " ".join(["w"] * n)},
                               {"from": "gpt", "value": " ".join(["a"] * m)}]}
            for n, m in ((10, 20), (2, 20), (10, 2), (1500, 10), (900, 1200), (30, 40))]
    conv.append({"conversations": [{"value": "only one turn"}]})
    ds = tmp_path / "sg.json"
    ds.write_text(json.dumps(conv))
    reqs = asyncio.run(WorkloadSpec("sharegpt", num_prompts=10, seed=0, dataset_path=str(ds),
                                    disable_shuffle=True).build(None))
    assert [(len(r.prompt.split()), r.expected_output_len) for r in reqs][:2] == [(10, 20), (30, 40)]
    assert len(reqs) == 10  # two valid conversations, oversampled
    fixed = asyncio.run(WorkloadSpec("sharegpt", num_prompts=2, dataset_path=str(ds), output_len=2,
                                     disable_shuffle=True).build(None))
    assert [r.expected_output_len for r in fixed] == [2, 2]  # --output-len skips the min-output check


def test_prefix_repetition_shares_prefixes(tokenizer_json: Path) -> None:
    tok = LocalTokenizer(str(tokenizer_json))
    spec = WorkloadSpec("prefix_repetition", num_prompts=10, seed=1, prefix_len=20, suffix_len=8, num_prefixes=3,
                        disable_shuffle=True)
    reqs = asyncio.run(spec.build(tok))
    assert len(reqs) == 9  # N // num_prefixes per prefix, as vLLM
    def common(*texts: str) -> int:
        n = 0
        while all(len(t) > n and t[n] == texts[0][n] for t in texts):
            n += 1
        return n

    same = common(reqs[0].prompt, reqs[1].prompt, reqs[2].prompt)
    other = common(reqs[0].prompt, reqs[3].prompt)
    assert same > other and same >= len(asyncio.run(tok.decode(asyncio.run(tok.encode(reqs[0].prompt))[:20]))) - 1
    assert all(27 <= (r.prompt_len or 0) <= 29 for r in reqs)  # 20 + 8, the joint re-measured


@pytest.mark.parametrize(
    ("lines", "needle"),
    [('{"prompt": "ok"}\n{"text": "x"}\n', "d.jsonl:2"), ('{"prompt": "ok", "output_tokens": 0}\n', "positive"),
     ("not json\n", "not a JSON line"), ("\n\n", "has no prompts")],
)
def test_bad_custom_files(tmp_path: Path, lines: str, needle: str) -> None:
    ds = tmp_path / "d.jsonl"
    ds.write_text(lines)
    with pytest.raises(ConfigError, match=needle):
        WorkloadSpec("custom", num_prompts=2, dataset_path=str(ds))
