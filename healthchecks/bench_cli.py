"""Console script ``smoke-bench``: argv -> benchmark config, exit codes, all printing of the benchmark.

Exit codes: 0 done (every endpoint completed requests), 1 an endpoint failed, 2 usage or config error.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Sequence

from .cli import EXIT_OK, EXIT_UNHEALTHY, EXIT_USAGE, _common, _Parser, _positive, err, out, resolve_endpoints
from .engines import ENGINES
from .errors import ConfigError


def bench_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="smoke-bench", description="Serving benchmark for every endpoint, side by side, with "
                "TTFT/TPOT/ITL/E2EL defined exactly as `vllm bench serve` defines them.")
    _common(p)
    p.add_argument("--num-prompts", type=_positive(int), required=True, metavar="N")
    p.add_argument("--concurrency", type=_positive(int), metavar="C", help="max requests in flight per endpoint")
    p.add_argument("--request-rate", type=_positive(float), default=float("inf"), metavar="R",
                   help="requests per second (default inf: all at once)")
    p.add_argument("--burstiness", type=_positive(float), default=1.0, metavar="B",
                   help="gamma shape of the arrival gaps; 1 is Poisson")
    p.add_argument("--warmups", type=int, default=1, metavar="N", help="unmeasured requests first (default 1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--api", choices=sorted({a for e in ENGINES.values() for a in e.apis}),
                   help="default: each engine's own (ollama for Ollama, chat for the others)")
    p.add_argument("--dataset", metavar="FILE.jsonl", help='one {"prompt": "..."} per line')
    p.add_argument("--input-len", type=_positive(int), default=64, metavar="N", help="random prompts: words")
    p.add_argument("--output-len", type=_positive(int), default=64, metavar="N", help="max tokens per request")
    p.add_argument("--range-ratio", type=float, default=0.0, metavar="R",
                   help="random lengths vary within [len*(1-R), len*(1+R)]")
    p.add_argument("--ignore-eos", action="store_true", help="generate the full --output-len where supported")
    p.add_argument("--goodput", metavar="SLO", help="e.g. ttft:500,tpot:50,e2el:3000 (milliseconds)")
    p.add_argument("--json", metavar="FILE", dest="json_file", help="write the results as JSON")
    p.add_argument("--plot", metavar="FILE.png", help="write a PNG comparing the endpoints")
    p.add_argument("--request-timeout", type=_positive(float), default=300.0, metavar="SECONDS",
                   help="total time allowed per request (default 300)")
    p.add_argument("--no-gpu-sampling", action="store_true", help="do not sample nvidia-smi during the run")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = bench_parser().parse_args(argv)
    from . import bench, report

    try:
        eps = resolve_endpoints(args)
        cfg = bench.config_from_args(args)
        workload = bench.build_workload(cfg)
    except ConfigError as exc:
        err.print(f"smoke-bench: {exc}", markup=False, highlight=False)
        return EXIT_USAGE
    try:
        results = asyncio.run(bench.run_all(eps, cfg, workload, console=err))
    except ConfigError as exc:
        err.print(f"smoke-bench: {exc}", markup=False, highlight=False)
        return EXIT_USAGE
    except KeyboardInterrupt:
        err.print("smoke-bench: interrupted")
        return 130
    out.print(report.comparison_table(results))
    for r in results:
        for reason, n in sorted(r.errors.items(), key=lambda kv: -kv[1]):
            err.print(f"{r.label}: {n} failed: {reason}", markup=False, highlight=False)
    try:
        if args.json_file:
            report.write_json(results, args.json_file)
            out.print(f"wrote {args.json_file}", markup=False, highlight=False)
        if args.plot:
            report.write_plot(results, args.plot)
            out.print(f"wrote {args.plot}", markup=False, highlight=False)
    except OSError as exc:
        err.print(f"smoke-bench: cannot write output: {exc}", markup=False, highlight=False)
        return EXIT_USAGE
    return EXIT_OK if all(r.completed > 0 for r in results) else EXIT_UNHEALTHY
