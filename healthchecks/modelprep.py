"""Offline model preparation: turn a GGUF file into a Hugging Face directory vLLM can serve.

Air-gapped labs often have a GGUF (the Ollama / llama.cpp format) but no Hub access. vLLM wants
safetensors + config.json + tokenizer files. transformers can dequantize a GGUF, but
``save_pretrained`` refuses models marked as GGUF-quantized, so we save the state dict ourselves and
write config.json without ``quantization_config``.

Runs with any Python that has torch, transformers, gguf and safetensors (the kit's ``model`` extra), for
example the vLLM venv: ``python -m healthchecks.modelprep MODEL.gguf OUT_DIR``.
This module imports nothing from the rest of the package, so it needs no other kit dependency.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

DTYPES = ("bfloat16", "float16", "float32")


def convert(gguf: Path, out: Path, dtype: str = "bfloat16") -> Path:
    """Dequantize ``gguf`` into ``out`` (created); returns ``out``. Raises ValueError on bad input."""
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
        print(f"warning: {gguf.name} carries no chat template; /v1/chat/completions will refuse", file=sys.stderr)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="prepare-model",
        description="Convert a GGUF model into a safetensors directory that vLLM serves offline.",
    )
    parser.add_argument("gguf", type=Path, help="path to the .gguf file")
    parser.add_argument("out", type=Path, help="output directory (created)")
    parser.add_argument("--dtype", default="bfloat16", choices=DTYPES)
    args = parser.parse_args(argv)
    try:
        out = convert(args.gguf, args.out, args.dtype)
    except ImportError as exc:
        print(f"prepare-model: missing dependency ({exc.name}); install the 'model' extra", file=sys.stderr)
        return 2
    except (ValueError, OSError) as exc:
        print(f"prepare-model: {exc}", file=sys.stderr)
        return 1
    print(f"prepared {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
