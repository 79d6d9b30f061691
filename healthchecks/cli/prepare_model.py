"""Console script ``prepare-model``: a GGUF model -> a safetensors directory vLLM serves offline
(:mod:`healthchecks.modelprep` does the work). Runs in any Python with torch: the standard library, the kit's
exception tree and the common CLI layer only, e.g. ``python -m healthchecks.cli.prepare_model`` in the vLLM venv.

Exit codes: 0 prepared, 1 the conversion failed, 2 usage or input error.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from .. import __version__
from ..errors import BadGGUF, unexpected
from ..modelprep import DTYPES, check_gguf, convert
from .common import EXIT_FAILED, EXIT_OK, Parser, fail, say

PROG = "prepare-model"


def main(argv: list[str] | None = None) -> int:
    parser = Parser(
        prog=PROG,
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
        return fail(PROG, problem)
    try:
        check_gguf(args.gguf)
        warnings = convert(args.gguf, args.out, args.dtype)
    except ImportError as exc:
        return fail(PROG, f"missing dependency ({exc.name}); install the 'model' extra")
    except BadGGUF as exc:
        return fail(PROG, one_line(exc))
    except (ValueError, OSError) as exc:
        return fail(PROG, f"{args.gguf}: {one_line(exc)}", EXIT_FAILED)
    except Exception as exc:  # torch/transformers failures end as one line, never a traceback
        return fail(PROG, f"converting {args.gguf} failed: {unexpected(exc)}", EXIT_FAILED)
    for warning in warnings:
        say(f"warning: {warning}", err=True)
    say(f"prepared {args.out}")
    return EXIT_OK


def one_line(exc: BaseException, limit: int = 300) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


if __name__ == "__main__":
    sys.exit(main())
