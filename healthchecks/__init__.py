"""gpu-inference-kit health checks and smoke benchmark.

Which module owns what. Data flows top to bottom; only the modules under ``cli/`` and ``preflight.py`` print
(``bench.run_all`` and ``sweep.run_sweeps`` draw a progress bar on the console the CLI hands them).

    cli/            the console scripts, one module each, over one common layer
      common.py       Parser (one-line usage errors), exit codes, number and path arguments, output files
                      written whole, plain one-line messages
      console.py      the rich consoles of healthcheck and smoke-bench
      endpoint_args.py  the endpoint flags both share, resolved into endpoints before any request
      healthcheck.py  ``healthcheck``          smoke_bench.py  ``smoke-bench``
      gpu_report.py   ``gpu-report``           prepare_model.py  ``prepare-model``
      lab_report.py   ``lab-report``
      scripts.py      the entry points: each main run so that unwritable stdout/stderr is one line, never a traceback
    preflight.py    ``compose-preflight``: a compose project's settings, secrets, models and ports
    stack.py        the catalogue of the stack (stack.yml): engines, ports, settings with types and ranges
    exposure.py     no engine published beyond loopback without a key: one rule for compose-preflight, Ansible, pyinfra
    gateway.py      the LiteLLM gateway's config.yaml rendered from the catalogue (host and lab gateways)
    gateway_cost.py the gateway's cost in a smoke-bench run (added TTFT, throughput ratio)
    lab_report.py   one page, JSON and JUnit for the whole lab from the hosts' result folders
    server_metrics.py  the server's own figures during a benchmark (per-engine metric tables, scraper)
    memory_timeline.py GPU memory samples over a benchmark run, for the HTML plot
    endpoints/      where the endpoints are -> Endpoint
      url.py          ENGINE=URL, bare URLs, an engine's public address
      compose.py      a compose project as Compose reads it (.env, interpolation, files, project name)
      inventory.py    the one Ansible inventory reader and the one Ansible boolean reader
    engines/        THE CATALOGUE: one module per engine (vllm.py + vllm_metrics.py, llamacpp.py, ollama.py,
                    sglang.py, openai.py, gateway.py,
                    hf/). Each owns how to recognise it, liveness/readiness, model listing and matching, its
                    completion checks and benchmark request function, metrics, tokenizer endpoints, GPU-residency
                    signal, log signatures with fixes, default port and the setting names for compose and Ansible;
                    ``engines.resolve`` detects and rebuilds a bare URL for both CLIs
      base.py         the engine interface and the generic OpenAI-compatible server
      hf/             Hugging Face Inference Providers: choice.py, token.py, failures.py, router.py, engine.py
    check.py        the check sequence over the engine interface; --wait backoff; JUnit and Prometheus text
    bench.py        arrivals, concurrency and the run over the engine interface
    sweep.py        ``--sweep``: the highest load within the SLOs
    workload.py     benchmark workloads as ``vllm bench serve`` samples them; local tokenizers
    metrics.py      pure vLLM-exact metric formulas
    report.py       benchmark tables, JSON, plots      html_report.py  the --html page
    hf_report.py    the provider report of a run against the HF router
    gpu/            the GPU wing
      smi.py          the one nvidia-smi reader          attribution.py  GPU memory -> processes
      residency.py    the engine's processes here, and the gpu_residency verdict
      memory.py       GPU memory during a benchmark       samples.py      a host's samples for gpu-report
    diagnose.py     container state, restarts, log signatures (engine's + shared) -> cause + fix
    dockerhost.py   the Docker host: client, container for a port, published ports, compose services  (leaf)
    verdicts.py     PASS / FAIL / WARN / SKIP, Verdict, log Signature  (leaf)
    protocols/      httpx plumbing (Http, the one SSE/NDJSON reader), one-line error mapping; the OpenAI and Ollama
                    wire formats (openai.py, ollama.py); retry.py: backoff and Retry-After for every client
    fastnet.py      a lean asyncio network backend for httpcore (the benchmark's hot path)
    modelprep.py    offline GGUF -> safetensors for vLLM (prepare-model's work)
    numbers.py      whole numbers in text other tools wrote
    errors.py       the one exception tree: KitError > ConfigError (exit 2) > InputError > BadGGUF |
                    ProtocolError (exit 1); unexpected(): the one line for a surprise  (leaf)
"""

__version__ = "0.1.0"
