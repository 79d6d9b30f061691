"""Console script ``smoke-bench``: argv -> benchmark config, exit codes, all printing of the benchmark.

Flags follow ``vllm bench serve`` (``--max-concurrency``, ``--num-warmups``, ``--goodput ttft:500 tpot:50``,
``--percentile-metrics``, ``--metric-percentiles``, ``--dataset-name``/``--dataset-path``, ``--ramp-up-*``,
``--temperature``, ``--top-p``, ``--extra-body``, ``--header``); the kit's earlier names stay as aliases.
Every setting is checked before the first request: numbers, files to read, files to write, the API of every
endpoint (engines named in argv at once, bare URLs right after their engine is recognised).

Exit codes: 0 every endpoint passed (requests completed and at most ``--max-failure-share`` of them failed; with
``--sweep``: a load met the SLOs; with ``--num-runs N``: in every run), 1 an endpoint failed, 2 usage, config or
output error, 130/143 interrupted
(SIGINT/SIGTERM), 141 standard output closed (a pipe's reader went away).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
from collections.abc import Sequence
from typing import Any

from ..engines import ENGINES
from ..errors import ConfigError
from .common import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_TERMINATED,
    EXIT_UNHEALTHY,
    EXIT_USAGE,
    Parser,
    count,
    count0,
    fraction,
    integer,
    nonneg,
    output_file,
    rate,
    ratio,
    seconds,
    share,
)
from .console import err, out, say, table_console
from .endpoint_args import add_endpoint_arguments, resolve_endpoints

DEFAULT_SLO = {"ttft": 2000.0, "tpot": 100.0}  # --sweep without --goodput: an interactive chat user
SLO_TEXT = "ttft:2000 tpot:100"
DEFAULT_PROMPTS = 16
SCRAPE_INTERVAL = 2.0  # bench.SCRAPE_INTERVAL (not imported here: the parser loads before the benchmark)
METRIC_NAMES = ("ttft", "tpot", "itl", "e2el")


SEED_MAX = 2**32 - 1


def seed(text: str) -> int:
    """vLLM seeds numpy's legacy generator with it (``np.random.seed``), which takes 0 to 2**32 - 1 only."""
    value = integer(text)
    if not 0 <= value <= SEED_MAX:
        raise argparse.ArgumentTypeError(f"{text!r} must be a whole number from 0 to {SEED_MAX} (numpy's seed "
                                         "range, as vllm bench serve seeds it)")
    return value


# --extra-body keys the kit itself sets. vLLM's bench serve merges --extra-body over its payload, so such a key
# silently overrides it there; the kit refuses them instead (exit 2 naming the key and the flag to use): a
# non-streamed answer ("stream": false) cannot be timed, another "model" would mislabel every figure, and
# max_tokens/num_predict bypass --output-len, which the workload's expected lengths and ignore_eos rely on.
# Sampling keys (temperature, top_p, ignore_eos, min_tokens...) pass through and take precedence over the flags.
RESERVED_BODY_KEYS = {
    "model": "name the model with --model",
    "stream": "every benchmark request is streamed",
    "stream_options": "usage is always asked for",
    "messages": "prompts come from --dataset-name/--dataset-path",
    "prompt": "prompts come from --dataset-name/--dataset-path",
    "max_tokens": "use --output-len",
    "max_completion_tokens": "use --output-len",
}
# Headers the HTTP client writes itself (framing, connection handling, the JSON body's type): a second value
# breaks the request (h11 refuses a second Content-Length) or the server's reading of it.
RESERVED_HEADERS = {"content-length", "transfer-encoding", "host", "connection", "keep-alive", "upgrade", "te",
                    "trailer", "expect", "content-type", "content-encoding"}
_TCHAR = set("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON (a request body cannot carry it)")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is out of range for a JSON number")
    return value


def parse_extra_body(text: str) -> dict[str, Any]:
    """``--extra-body``: a JSON object without NaN/Infinity and without the keys the kit sets."""
    try:
        extra = json.loads(text, parse_constant=_reject_constant, parse_float=_finite)
    except RecursionError:
        raise ConfigError("--extra-body is nested too deeply") from None
    except ValueError as exc:
        raise ConfigError(f"--extra-body is not JSON: {exc}") from None
    if not isinstance(extra, dict):
        raise ConfigError("--extra-body must be a JSON object")
    for key, why in RESERVED_BODY_KEYS.items():
        if key in extra:
            raise ConfigError(f"--extra-body key {key!r} is set by smoke-bench ({why})")
    options = extra.get("options")
    if isinstance(options, dict) and "num_predict" in options:  # Ollama's max_tokens
        raise ConfigError("--extra-body key 'options.num_predict' is set by smoke-bench (use --output-len)")
    return extra


def parse_headers(items: list[str]) -> dict[str, str]:
    """``--header KEY=VALUE``: a name HTTP allows (RFC 9110 token) that the client does not set itself, and a
    printable ASCII value; messages never show the value (it may be a secret)."""
    headers: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key, value = key.strip(), value.strip()
        shown = key if key.isascii() and key.isprintable() and len(key) <= 40 else ascii(key[:40])
        if not sep or not key:
            raise ConfigError(f"--header {shown!r}...: expected KEY=VALUE")
        if not set(key) <= _TCHAR:
            raise ConfigError(f"--header {shown!r}: not a valid header name (letters, digits and !#$%&'*+-.^_`|~ "
                              "only; no spaces)")
        if key.lower() in RESERVED_HEADERS:
            raise ConfigError(f"--header {key}: set by the HTTP client itself, cannot be given")
        if not value.isascii() or any(not (c.isprintable() or c == "\t") for c in value):
            raise ConfigError(f"--header {key}: the value must be printable ASCII (no line breaks, no "
                              "non-ASCII characters)")
        headers[key] = value
    return headers


def bench_parser() -> argparse.ArgumentParser:
    p = Parser(prog="smoke-bench", formatter_class=argparse.RawDescriptionHelpFormatter,
                description="Serving benchmark for every endpoint, side by side, run and measured request for "
                "request as `vllm bench serve` (same arrivals, request order, metrics and JSON fields); "
                "--sweep finds the highest load each engine serves within latency targets.",
                epilog=f"--sweep without --goodput uses the SLOs {SLO_TEXT} (ms: 2 s to the first token, "
                "10 tokens/s per user). Exit codes: 0 every endpoint passed (requests completed, failed share at "
                "most --max-failure-share, in every one of --num-runs; a sweep: a load met the SLOs), 1 an "
                "endpoint failed, 2 usage, config or output error, 130/143 interrupted, 141 standard output closed.")
    add_endpoint_arguments(p)
    load = p.add_argument_group("load")
    load.add_argument("--num-prompts", type=count, default=DEFAULT_PROMPTS, metavar="N",
                      help=f"requests per run (per load point with --sweep; default {DEFAULT_PROMPTS}, a smoke run: "
                      "vllm bench serve's is 1000)")
    load.add_argument("--num-runs", type=count, default=1, metavar="N",
                      help="repeat the same run N times (same prompts and arrivals) and report each headline figure "
                      "as min / median / max over the runs; the exit code applies the gate to every run "
                      "(default 1)")
    load.add_argument("--max-concurrency", "--concurrency", dest="max_concurrency", type=count, metavar="C",
                      help="max requests in flight per endpoint")
    load.add_argument("--request-rate", type=rate, default=float("inf"), metavar="R",
                      help="requests per second (default inf: all at once)")
    load.add_argument("--burstiness", type=rate, default=1.0, metavar="B",
                      help="gamma shape of the arrival gaps: 1 Poisson, inf constant gaps (default 1)")
    load.add_argument("--ramp-up-strategy", choices=("linear", "exponential"),
                      help="raise the rate from --ramp-up-start-rps to --ramp-up-end-rps over the run")
    load.add_argument("--ramp-up-start-rps", type=nonneg, metavar="RPS")
    load.add_argument("--ramp-up-end-rps", type=nonneg, metavar="RPS")
    load.add_argument("--num-warmups", "--warmups", dest="num_warmups", type=count0, default=0, metavar="N",
                      help="unmeasured requests after vLLM's initial test request (default 0)")
    load.add_argument("--seed", type=seed, default=0, help=f"0 to {SEED_MAX} (default 0)")
    load.add_argument("--api", choices=sorted({a for e in ENGINES.values() for a in e.apis}),
                      help="default: each engine's own (ollama for Ollama, chat for the others)")
    load.add_argument("--request-timeout", type=seconds, default=300.0, metavar="SECONDS",
                      help="total time allowed per request (default 300)")
    data = p.add_argument_group("workload")
    data.add_argument("--dataset-name", choices=("random", "custom", "sharegpt", "prefix_repetition"),
                      help="default: random; custom for a .jsonl --dataset-path, sharegpt for .json")
    data.add_argument("--dataset-path", "--dataset", dest="dataset_path", metavar="FILE",
                      help='custom: one {"prompt": "...", "output_tokens": N} per line; sharegpt: a JSON list')
    data.add_argument("--disable-shuffle", action="store_true",
                      help="keep the file's order (default: shuffled with the seed, as vLLM)")
    data.add_argument("--input-len", "--random-input-len", dest="input_len", type=count, default=64,
                      metavar="N", help="random prompts: tokens of the engine's tokenizer (default 64)")
    data.add_argument("--output-len", "--random-output-len", dest="output_len", type=count, metavar="N",
                      help="max tokens per request (default 64; custom: each line's output_tokens)")
    data.add_argument("--range-ratio", "--random-range-ratio", dest="range_ratio", type=ratio, default=0.0,
                      metavar="R", help="random: input and output lengths within [len*(1-R), len*(1+R)]")
    data.add_argument("--prefix-repetition-prefix-len", "--prefix-len", dest="prefix_len", type=count,
                      default=64, metavar="N", help="prefix_repetition: tokens of each shared prefix")
    data.add_argument("--prefix-repetition-suffix-len", "--suffix-len", dest="suffix_len", type=count,
                      default=64, metavar="N", help="prefix_repetition: tokens after the prefix")
    data.add_argument("--prefix-repetition-num-prefixes", "--num-prefixes", dest="num_prefixes", type=count,
                      default=4, metavar="N", help="prefix_repetition: distinct prefixes")
    data.add_argument("--tokenizer", metavar="PATH", help="tokenizer.json, a model folder holding one, or a "
                      ".gguf: counts tokens for engines without a /tokenize endpoint (Ollama)")
    data.add_argument("--ignore-eos", action=argparse.BooleanOptionalAction, default=None,
                      help="generate the full output length (default: on for random prompts, as vLLM)")
    data.add_argument("--temperature", type=nonneg, metavar="T", help="default 0 (greedy)")
    data.add_argument("--top-p", type=fraction, metavar="P")
    data.add_argument("--extra-body", metavar="JSON", help="a JSON object merged into every request body")
    data.add_argument("--header", action="extend", nargs="+", default=[], metavar="KEY=VALUE",
                      help="extra request header (repeatable)")
    stats = p.add_argument_group("metrics")
    stats.add_argument("--goodput", nargs="+", metavar="SLO",
                       help="service level objectives in ms: ttft:500 tpot:50 e2el:3000 (or comma-separated)")
    stats.add_argument("--max-failure-share", type=share, default=0.0, metavar="F",
                       help="share of failed requests (0 to 1) an endpoint may have and still pass; more fails "
                       "the run (exit 1). Default 0: any failed request fails it. A --sweep is judged by its "
                       "SLOs instead")
    stats.add_argument("--error-budget", action="store_true",
                       help="stop a run as soon as more requests failed than --max-failure-share allows of "
                       "--num-prompts (its verdict cannot change any more); a sweep stops climbing there")
    stats.add_argument("--percentile-metrics", default="ttft,tpot,itl,e2el", metavar="LIST",
                       help="metrics with statistics (default ttft,tpot,itl,e2el)")
    stats.add_argument("--metric-percentiles", default="50,90,99", metavar="LIST",
                       help="percentiles reported (default 50,90,99)")
    sweep = p.add_argument_group("sweep")
    sweep.add_argument("--sweep", action="store_true",
                       help="per endpoint: a synchronous run, a max-throughput run, then a ladder of loads "
                       f"between them; reports the highest load meeting --goodput (default {SLO_TEXT})")
    sweep.add_argument("--sweep-mode", choices=("rate", "concurrency"), default="rate",
                       help="ladder of request rates (default) or of concurrent users")
    sweep.add_argument("--sweep-points", type=count, default=5, metavar="K",
                       help="loads between the synchronous and the max-throughput run (default 5)")
    sweep.add_argument("--slo-attainment", type=fraction, default=0.9, metavar="F",
                       help="share of requests that must meet every SLO for a load to pass (default 0.9)")
    sweep.add_argument("--max-seconds", type=seconds, metavar="S",
                       help="time budget of the whole sweep (all endpoints); points are cut at it")
    outs = p.add_argument_group("output")
    outs.add_argument("--json", metavar="FILE", dest="json_file",
                      help="results as JSON (vllm bench serve --save-result fields per endpoint)")
    outs.add_argument("--save-detailed", action="store_true", help="also each request's generated text")
    outs.add_argument("--plot", metavar="FILE.png", help="PNG comparing the endpoints (sweep: latency vs "
                      "throughput curves)")
    outs.add_argument("--html", metavar="FILE.html", help="one self-contained report page (no network)")
    outs.add_argument("--scrape-interval", type=seconds, default=SCRAPE_INTERVAL, metavar="S",
                      help=f"seconds between scrapes of the server's own figures during the run (/metrics: running "
                      "and waiting requests, KV cache, cache hits; Ollama: /api/ps; default "
                      f"{SCRAPE_INTERVAL:g}: each costs the vLLM server ~9 ms, well under 1%%); the cost is printed")
    outs.add_argument("--no-server-metrics", action="store_true",
                      help="do not scrape the server's figures (/metrics, /api/ps)")
    outs.add_argument("--no-gpu-sampling", action="store_true", help="do not sample nvidia-smi during the run")
    return p


def _csv(text: str, flag: str) -> list[str]:
    items = [x.strip() for x in text.split(",") if x.strip()]
    if not items:
        raise ConfigError(f"{flag} is empty")
    return items


def config_from_args(a: argparse.Namespace) -> Any:
    """argv -> BenchConfig, every value checked (ConfigError naming the flag)."""
    from .. import bench, metrics
    from ..workload import WorkloadSpec

    for value, flag, suffixes in ((a.json_file, "--json", ()), (a.plot, "--plot", (".png", ".svg", ".pdf")),
                                  (a.html, "--html", ())):
        if value:
            output_file(flag, value, suffixes=suffixes, make_folders=True)
    for flag, value in (("--dataset-path", a.dataset_path), ("--tokenizer", a.tokenizer)):
        if value and "\0" in value:
            raise ConfigError(f"{flag} {value!r}: a file name cannot hold a NUL character")
    pm = _csv(a.percentile_metrics, "--percentile-metrics")
    if bad := [m for m in pm if m not in METRIC_NAMES]:
        raise ConfigError(f"--percentile-metrics {bad[0]}: expected names from {','.join(METRIC_NAMES)}")
    pcts = []
    for item in _csv(a.metric_percentiles, "--metric-percentiles"):
        try:
            v = float(item)
        except ValueError:
            raise ConfigError(f"--metric-percentiles {item!r} is not a number") from None
        if not 0 < v <= 100:
            raise ConfigError(f"--metric-percentiles {item!r} must be in (0, 100]")
        pcts.append(v)
    try:
        goodput = metrics.parse_goodput(a.goodput)
    except ValueError as exc:
        raise ConfigError(f"--goodput: {exc}") from None
    if a.sweep and not goodput:
        goodput = dict(DEFAULT_SLO)
    extra = parse_extra_body(a.extra_body) if a.extra_body else {}
    headers = parse_headers(a.header)
    bench.check_ramp(a.ramp_up_strategy, a.ramp_up_start_rps, a.ramp_up_end_rps, a.request_rate)
    if a.max_seconds and not a.sweep:
        raise ConfigError("--max-seconds bounds a --sweep; a single run is bounded by --num-prompts")
    if a.sweep and a.num_runs > 1:
        raise ConfigError("--num-runs repeats a single run; a --sweep is not repeated (drop one of them)")
    if a.sweep and a.ramp_up_strategy:
        raise ConfigError("--sweep sets the load itself: drop --ramp-up-strategy")
    name = a.dataset_name
    if name is None:
        name = "random" if not a.dataset_path else "sharegpt" if a.dataset_path.endswith(".json") else "custom"
    spec = WorkloadSpec(dataset_name=name, num_prompts=a.num_prompts, seed=a.seed, input_len=a.input_len,
                        output_len=a.output_len, range_ratio=a.range_ratio, prefix_len=a.prefix_len,
                        suffix_len=a.suffix_len, num_prefixes=a.num_prefixes, dataset_path=a.dataset_path,
                        disable_shuffle=a.disable_shuffle)
    if a.tokenizer:
        from ..workload import LocalTokenizer

        LocalTokenizer(a.tokenizer)  # a bad file fails now, not after the first endpoint
    return bench.BenchConfig(
        num_prompts=a.num_prompts, max_concurrency=a.max_concurrency, request_rate=a.request_rate,
        burstiness=a.burstiness, num_warmups=a.num_warmups, seed=a.seed, api=a.api, workload=spec,
        ignore_eos=a.ignore_eos, goodput=goodput, percentile_metrics=tuple(pm), metric_percentiles=tuple(pcts),
        temperature=a.temperature, top_p=a.top_p, extra_body=extra, headers=headers,
        ramp_up_strategy=a.ramp_up_strategy, ramp_up_start_rps=a.ramp_up_start_rps,
        ramp_up_end_rps=a.ramp_up_end_rps, tokenizer=a.tokenizer, timeout=a.timeout,
        request_timeout=a.request_timeout, gpu_sampling=not a.no_gpu_sampling, save_detailed=a.save_detailed,
        ca_bundle=a.ca_bundle, insecure=a.insecure, max_failure_share=a.max_failure_share,
        error_budget=a.error_budget, scrape_interval=None if a.no_server_metrics else a.scrape_interval,
        num_runs=a.num_runs)


def check_known_apis(eps: list[Any], api: str | None) -> None:
    """Endpoints whose engine is named (ENGINE=URL, compose, inventory): the API is checked before anything
    is sent; bare URLs are checked as soon as their engine is recognised."""
    for ep in eps:
        engine = ENGINES.get(ep.engine) if ep.engine else None
        if engine is not None and api is not None and api not in engine.apis:
            raise ConfigError(f"--api {api} is not served by {ep.label} ({engine.name} serves "
                              f"{', '.join(engine.apis)})")


def main(argv: Sequence[str] | None = None) -> int:
    args = bench_parser().parse_args(argv)
    from .. import bench, report

    try:
        cfg = config_from_args(args)
        eps = resolve_endpoints(args)
        check_known_apis(eps, args.api)
    except ConfigError as exc:
        say(err, f"smoke-bench: {exc}")
        return EXIT_USAGE
    sweep_opts = None
    if args.sweep:
        from ..sweep import SweepOptions

        sweep_opts = SweepOptions(mode=args.sweep_mode, points=args.sweep_points, attainment=args.slo_attainment,
                                  max_seconds=args.max_seconds)
    runs: list[list[Any]] = []
    try:
        if sweep_opts is not None:
            from ..sweep import run_sweeps

            results = asyncio.run(run_sweeps(eps, cfg, sweep_opts, console=err))
        else:
            runs = asyncio.run(bench.run_series(eps, cfg, cfg.num_runs, console=err))
            results = runs[-1]
    except ConfigError as exc:
        say(err, f"smoke-bench: {exc}")
        return EXIT_USAGE
    except KeyboardInterrupt:
        say(err, "smoke-bench: interrupted")
        return EXIT_INTERRUPTED
    series = runs if len(runs) > 1 or cfg.num_runs > 1 else []
    for r in results:
        if r.tokens_from.startswith("words"):
            say(err, f"warning: {r.label}: prompt lengths counted in words, not tokens: {r.tokens_from[7:-1]}; "
                 "pass --tokenizer tokenizer.json or the model's .gguf for token-exact prompts")
    tables = table_console()
    if sweep_opts is not None:
        tables.print(report.sweep_table(results))
        for line in report.sweep_summary(results, cfg.goodput, sweep_opts.attainment):
            say(out, line)
    else:
        tables.print(report.comparison_table(results, cfg))
        for engine in ENGINES.values():  # engine-specific views, e.g. HF's provider report
            for view in engine.views(results):
                tables.print(view)
        if series:
            tables.print(report.spread_table(series))
    for i, run in enumerate(series[:-1], 1):  # the earlier runs' failures; the last run's follow
        for r in run:
            for reason, n in sorted(r.errors.items(), key=lambda kv: -kv[1]):
                say(err, f"{r.label}: run {i}: {n} failed: {reason}")
    for r in results:
        run_no = f"run {len(series)}: " if series else ""
        for reason, n in sorted(r.errors.items(), key=lambda kv: -kv[1]):
            say(err, f"{r.label}: {run_no}{n} failed: {reason}")
        for reason, n in sorted(r.warnings.items(), key=lambda kv: -kv[1]):
            say(err, f"{r.label}: warning: {n} completed by vLLM's rules, but {reason}")
        if r.scrapes and r.scrapes["scrapes"]:
            sc = r.scrapes
            share = sc["response_share_of_run"]
            say(err, f"{r.label}: server metrics: {sc['scrapes']} scrapes of "
                 f"{(r.server_metrics or {}).get('path') or '/metrics'} every {sc['interval_s']:g} s, "
                 f"{sc['mean_response_ms']:.1f} ms each"
                 + (f", {100 * share:.2f}% of the run's time (an upper bound of the server's cost)" if share else ""))
        if r.stopped_early:
            say(err, f"{r.label}: {r.stopped_early}")
        elif r.cut_short:
            say(err, f"{r.label}: {r.cut_short} request(s) not sent or cancelled at "
                 f"{'the ' + r.interrupted if r.interrupted else '--max-seconds'}")
        if r.server_metrics and (what := r.server_metrics.get("note") or r.server_metrics.get("source")) and \
                what != f"GET {r.server_metrics.get('path')}":  # say what was read when it is not the usual
            say(err, f"{r.label}: server metrics: {what}")
    stopped_by = next((r.interrupted for r in results if r.interrupted), "")
    if stopped_by and series:
        say(err, f"smoke-bench: interrupted by {stopped_by} in run {len(series)} of {cfg.num_runs}: the "
                 f"{len(series) - 1} complete run(s) are kept, the spread is over them")
    elif stopped_by:
        say(err, f"smoke-bench: interrupted by {stopped_by}: the figures above are what completed before it")
    code = write_outputs(args, results, cfg, sweep=sweep_opts is not None, runs=series) or \
        exit_code(results, cfg, series)
    if stopped_by and code != EXIT_USAGE:
        return EXIT_INTERRUPTED if stopped_by == "SIGINT" else EXIT_TERMINATED
    return code


def exit_code(results: list[Any], cfg: Any, runs: list[list[Any]] | None = None) -> int:
    """0 when every endpoint passes its verdict (bench.verdict) in every run, else 1, each failing one named in a
    line (with ``--num-runs``: the runs it failed, and why)."""
    from .. import bench

    if runs:
        from ..report import series_verdict

        failing = [(e["label"], e["failed_because"]) for e in series_verdict(runs, cfg)["endpoints"]
                   if e["failed_because"]]
    else:
        failing = [(r.label, why) for r in results if (why := bench.verdict(r, cfg))]
    for label, why in failing:
        say(err, f"smoke-bench: {label}: FAILED: {why}")
    return EXIT_UNHEALTHY if failing else EXIT_OK


def write_outputs(args: argparse.Namespace, results: list[Any], cfg: Any, *, sweep: bool,
                  runs: list[list[Any]] | None = None) -> int:
    """Every output flag's file, each on its own: one that cannot be written (full disk, read-only folder) is one
    line naming the flag, the file and the cause, and the others are still written. Returns 2 when one failed."""
    from .. import report

    def html() -> None:
        from ..html_report import write_html

        write_html(results, cfg, args.html, runs or None)

    def plot() -> None:
        (report.write_sweep_plot if sweep else report.write_plot)(results, args.plot)

    def json_out() -> None:
        report.write_json(results, args.json_file, cfg, runs or None)

    code = 0
    for flag, path, write in (("--json", args.json_file, json_out),
                              ("--plot", args.plot, plot), ("--html", args.html, html)):
        if not path:
            continue
        try:
            write()
        except OSError as exc:
            say(err, f"smoke-bench: {flag} {path}: cannot write: {exc.strerror or exc}")
            code = EXIT_USAGE
        else:
            say(out, f"wrote {path}")
    return code
