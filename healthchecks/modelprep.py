"""Offline model preparation: turn a GGUF file into a Hugging Face directory vLLM can serve.

Air-gapped labs often have a GGUF (the Ollama / llama.cpp format) but no Hub access. vLLM wants
safetensors + config.json + tokenizer files. transformers can dequantize a GGUF, but
``save_pretrained`` refuses models marked as GGUF-quantized, so we save the state dict ourselves and
write config.json without ``quantization_config``.

Runs with any Python that has torch, transformers, gguf and safetensors (the kit's ``model`` extra), for
example the vLLM venv: ``python -m healthchecks.modelprep MODEL.gguf OUT_DIR``.
This module imports nothing from the rest of the package (only its version), so it needs no other kit
dependency.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from pathlib import Path
from typing import NoReturn

from . import __version__

DTYPES = ("bfloat16", "float16", "float32")


class BadGGUF(ValueError):
    """The input is not a complete, well-formed GGUF file (exit 2, one line naming it)."""


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


EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class _Parser(argparse.ArgumentParser):
    """Usage errors in one line with exit 2, as the kit's other CLIs (this module imports no kit module
    beyond the package version, so that it runs in any environment with torch)."""

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: error: {message} (see --help)", file=sys.stderr)
        sys.exit(EXIT_USAGE)


def main(argv: list[str] | None = None) -> int:
    for stream in (sys.stdout, sys.stderr):  # paths a terminal cannot show are escaped, not a traceback
        with contextlib.suppress(AttributeError, ValueError, OSError):
            stream.reconfigure(errors="backslashreplace")  # type: ignore[union-attr]
    parser = _Parser(
        prog="prepare-model",
        description="Convert a GGUF model into a safetensors directory that vLLM serves offline.",
        epilog="Exit codes: 0 prepared, 1 the conversion failed, 2 usage or input error (missing or unreadable "
               "GGUF, output path not a directory, missing 'model' extra).",
    )
    parser.add_argument("gguf", type=Path, help="path to the .gguf file")
    parser.add_argument("out", type=Path, help="output directory (created)")
    parser.add_argument("--dtype", default="bfloat16", choices=DTYPES)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    args = parser.parse_args(argv)
    problem = None
    if not args.gguf.is_file():
        problem = f"GGUF file not found: {args.gguf}" if not args.gguf.exists() else f"{args.gguf} is not a file"
    elif not os.access(args.gguf, os.R_OK):
        problem = f"GGUF file {args.gguf} is not readable"
    elif args.out.exists() and not args.out.is_dir():
        problem = f"output {args.out} exists and is not a directory"
    if problem:
        print(f"prepare-model: {problem}", file=sys.stderr)
        return EXIT_USAGE
    try:
        check_gguf(args.gguf)
        out = convert(args.gguf, args.out, args.dtype)
    except ImportError as exc:
        print(f"prepare-model: missing dependency ({exc.name}); install the 'model' extra", file=sys.stderr)
        return EXIT_USAGE
    except BadGGUF as exc:
        print(f"prepare-model: {one_line(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except (ValueError, OSError) as exc:
        print(f"prepare-model: {args.gguf}: {one_line(exc)}", file=sys.stderr)
        return EXIT_FAILED
    except Exception as exc:  # torch/transformers failures end as one line, never a traceback
        print(f"prepare-model: converting {args.gguf} failed: {type(exc).__name__}: {one_line(exc)}",
              file=sys.stderr)
        return EXIT_FAILED
    print(f"prepared {out}")
    return EXIT_OK


def one_line(exc: BaseException, limit: int = 300) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


if __name__ == "__main__":
    sys.exit(main())
