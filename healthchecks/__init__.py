"""gpu-inference-kit health checks and smoke benchmark.

Which module owns what (data flows top to bottom; only the two CLI modules print):

    cli.py          ``healthcheck``; argv conventions and endpoint resolution shared by both CLIs; exit codes
    bench_cli.py    ``smoke-bench``: argv -> BenchConfig, tables and files out
    endpoints.py    ENGINE=URL, compose projects (.env, labels, overlays), Ansible inventories -> Endpoint
    engines/        THE CATALOGUE: one module per engine (vllm, llamacpp, ollama, sglang, openai). Each owns how
                    to recognise it, liveness/readiness, model listing and matching, its completion checks and
                    benchmark request function, metrics, tokenizer endpoints, GPU-residency signal, log
                    signatures with fixes, default port and the setting names for compose and Ansible
    check.py        the check sequence over the engine interface; --wait backoff
    bench.py        workload, arrivals, concurrency over the engine interface
    metrics.py      pure vLLM-exact metric formulas
    report.py       benchmark tables, JSON, plots
    protocols/      httpx plumbing (Http), OpenAI and Ollama wire formats, one-line error mapping
    diagnose.py     docker SDK: container state, restarts, log signatures (engine's + shared) -> cause + fix
    gpu.py          nvidia-smi parsing and GPU memory sampling
    preflight.py    ``compose-preflight``: a compose project's settings, secrets, models and ports
    modelprep.py    ``prepare-model``: offline GGUF -> safetensors for vLLM
    errors.py       the one exception tree: KitError > ConfigError (exit 2) | ProtocolError (exit 1)
"""

__version__ = "0.1.0"
