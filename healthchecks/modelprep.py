"""Offline model preparation: turn a GGUF file into a Hugging Face directory vLLM can serve.

Air-gapped labs often have a GGUF (the Ollama / llama.cpp format) but no Hub access. vLLM wants
safetensors + config.json + tokenizer files. transformers can dequantize a GGUF, but
``save_pretrained`` refuses models marked as GGUF-quantized, so we save the state dict ourselves and
write config.json without ``quantization_config``.

Runs with any Python that has torch, transformers, gguf and safetensors (the kit's ``model`` extra), for
example the vLLM venv: ``python -m healthchecks.cli.prepare_model MODEL.gguf OUT_DIR`` (the console script
``prepare-model``). This module and that script import only the standard library and the kit's exception tree,
so they need no other kit dependency. Nothing here prints.
"""

from __future__ import annotations

import json
from pathlib import Path

from .errors import BadGGUF

DTYPES = ("bfloat16", "float16", "float32")


def check_gguf(gguf: Path) -> None:
    """Parse ``gguf``'s header, metadata and tensor table with the ``gguf`` library before transformers does:
    a truncated or corrupt file fails here as :class:`BadGGUF` naming it, not deep inside a loader with
    ``struct.error`` or ``IndexError``. Raises ImportError when ``gguf`` is missing."""
    try:
        size = gguf.stat().st_size
        with gguf.open("rb") as fh:
            head = fh.read(4)
    except OSError as exc:
        raise BadGGUF(f"GGUF file {gguf} cannot be read: {exc.strerror or exc}") from None
    if size == 0:
        raise BadGGUF(f"{gguf} is empty, not a GGUF file")
    if head != b"GGUF":
        raise BadGGUF(f"{gguf} is not a GGUF file (it does not start with the bytes GGUF)")
    from gguf import GGUFReader

    try:
        reader = GGUFReader(str(gguf))
        end = max((int(t.data_offset) + int(t.n_bytes) for t in reader.tensors), default=0)
    except Exception as exc:  # the gguf library raises struct.error, ValueError, IndexError, numpy errors...
        raise BadGGUF(f"{gguf} is truncated or corrupt: its header and tensor table do not parse "
                      f"({type(exc).__name__})") from None
    if not reader.tensors:
        raise BadGGUF(f"{gguf} holds no tensors: not a model")
    if end > size:
        raise BadGGUF(f"{gguf} is truncated: its tensors end at byte {end}, the file has {size}")


def convert(gguf: Path, out: Path, dtype: str = "bfloat16") -> list[str]:
    """Dequantize ``gguf`` into ``out`` (created); returns warnings about the result (one line each). Raises
    ValueError on bad input."""
    if not gguf.is_file():
        raise ValueError(f"GGUF file not found: {gguf}")
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, not {dtype!r}")
    import torch
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch_dtype = getattr(torch, dtype)
    model = AutoModelForCausalLM.from_pretrained(
        str(gguf.parent), gguf_file=gguf.name, dtype=torch_dtype, low_cpu_mem_usage=True
    )
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)

    out.mkdir(parents=True, exist_ok=True)
    state = model.state_dict()
    # Tied weights share storage; safetensors refuses shared tensors and vLLM re-ties them itself.
    if getattr(model.config, "tie_word_embeddings", False):
        state.pop("lm_head.weight", None)
    tensors = {k: v.detach().to(torch_dtype).contiguous() for k, v in state.items()}
    save_file(tensors, str(out / "model.safetensors"), metadata={"format": "pt"})

    config = model.config.to_dict()
    config.pop("quantization_config", None)
    config["torch_dtype"] = dtype
    config["architectures"] = [type(model).__name__]
    (out / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    if model.generation_config is not None:
        model.generation_config.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    for f in out.iterdir():  # readable by the non-root users that engine images run as
        f.chmod(0o644)
    if not getattr(tokenizer, "chat_template", None):
        return [f"{gguf.name} carries no chat template; /v1/chat/completions will refuse"]
    return []
