"""Session fixtures that run REAL engines on loopback: vLLM (CPU build), llama.cpp's llama-server, and the
Ollama protocol double. Paths come from tests/setup.sh (same defaults, same GIK_CACHE)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

CACHE = Path(os.environ.get("GIK_CACHE", Path.home() / ".cache" / "gik"))
VLLM_PY = CACHE / "venv-vllm" / "bin" / "python"
LLAMA_SERVER = CACHE / "llama.cpp" / "bin" / "llama-server"
GGUF = CACHE / "models" / "smollm2-135m-instruct" / "SmolLM2-135M-Instruct.Q4_1.gguf"
HF_DIR = CACHE / "models" / "smollm2-135m-instruct-hf"
MODEL = "smollm2:135m"  # the one served name on every engine, as in compose/.env.example


# How `make test` spreads the work over its pytest-xdist workers (a scheduler of its own, below, with
# --no-loadscope-reorder): a unit of work is a test module (its module fixtures, e.g. the container lab, built once),
# or one test that builds its whole setup itself (function-scoped fixtures) and is long enough to run beside the rest
# of its module. Units are taken longest first (so no long one starts last and leaves the other worker idle), the
# others in file order. Seconds: a serial run on this 2-core machine (--durations); only the order depends on them.
SCHEDULE = {
    "tests/e2e/test_lab.py": 930,
    "tests/e2e/test_connected_lab.py": 490,
    "tests/e2e/test_ansible.py::test_site_yml_deploys_verifies_and_is_idempotent": 490,
    "tests/e2e/test_pyinfra.py": 470,
    "tests/e2e/test_ansible.py": 430,
    "tests/e2e/test_lab_gateway.py": 280,
    "tests/integration/test_gateway_healthcheck.py": 230,
    "tests/e2e/test_compose.py": 220,
    "tests/integration/test_gateway.py": 210,
    "tests/e2e/test_exposure_deploy.py": 200,
    "tests/e2e/test_ansible.py::test_site_yml_on_a_compose_v1_host": 160,
    "tests/integration/test_smoke_bench.py": 150,
}


def unit_of(nodeid: str) -> str:
    """The unit of work a test belongs to (see SCHEDULE)."""
    test = nodeid.split("[", 1)[0]
    return test if test in SCHEDULE else nodeid.split("::", 1)[0]


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """The figures tests measured (``record_property(\"figure\", text)``; passing tests print nothing else in CI),
    one line each, after the test results."""
    lines = sorted({(str(value), rep.nodeid) for reps in terminalreporter.stats.values() for rep in reps
                    if getattr(rep, "when", None) == "call"
                    for name, value in getattr(rep, "user_properties", ()) if name == "figure"})
    if lines:
        terminalreporter.section("figures")
        for value, nodeid in lines:
            terminalreporter.write_line(f"{value}  [{nodeid}]")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    order = {id(item): i for i, item in enumerate(items)}
    items.sort(key=lambda item: (-SCHEDULE.get(unit_of(item.nodeid), 0), order[id(item)]))


@pytest.hookimpl(optionalhook=True)  # a hook of pytest-xdist (not installed with .[ansible] alone)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """xdist's scheduler of whole scopes (every test of a scope on one worker, a scope at a time as workers free
    up), with the units of work above as scopes. (Not --dist loadgroup: with pytest 9 the xdist_group suffix it
    writes into a test's node id no longer reaches the scheduler, and every test became a unit of its own.)"""
    from xdist.scheduler import LoadScopeScheduling

    class Units(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return unit_of(nodeid)

    return Units(config, log)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_healthcheck(*args: str, timeout: float = 300,
                    env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The real ``healthcheck`` console script of this venv; ``env`` adds to the process environment."""
    return subprocess.run([str(Path(sys.executable).parent / "healthcheck"), *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def check_rows(doc: dict[str, Any], idx: int = 0) -> dict[str, dict[str, Any]]:
    """healthcheck --json: the rows of endpoint ``idx`` by check name."""
    return {c["name"]: c for c in doc["endpoints"][idx]["checks"]}


def flat_tasks(tasks: Any) -> list[dict[str, Any]]:
    """An Ansible task list with every block/rescue/always flattened in (for the static role tests)."""
    out: list[dict[str, Any]] = []
    for t in tasks or []:
        if isinstance(t, dict):
            out.append(t)
            for key in ("block", "rescue", "always"):
                out += flat_tasks(t.get(key))
    return out


def wait_http(url: str, timeout: float) -> bool:
    """True once ``url`` answers HTTP at all (any status), False when ``timeout`` seconds pass first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=1)
            return True
        except httpx.HTTPError:
            time.sleep(0.1)
    return False


@dataclass
class Engine:
    name: str
    url: str
    model: str
    log: Path
    proc: subprocess.Popen[bytes] | None = None

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"


def _need(path: Path) -> None:
    if not path.exists():
        pytest.fail(f"{path} is missing: run `bash tests/setup.sh` first", pytrace=False)


def _start(name: str, argv: list[str], url: str, health: str, tmp: Path, timeout: float,
           env: dict[str, str] | None = None) -> Engine:
    log = tmp / f"{name}.log"
    fh = log.open("wb")
    proc = subprocess.Popen(argv, stdout=fh, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})},
                            start_new_session=True)
    engine = Engine(name, url, MODEL, log, proc)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"{name} exited with {proc.returncode} during start-up; log tail:\n{engine.log_tail()}",
                        pytrace=False)
        try:
            if httpx.get(url + health, timeout=2).status_code == 200:
                return engine
        except httpx.HTTPError:
            pass
        time.sleep(1)
    _stop(engine)
    pytest.fail(f"{name} not healthy after {timeout:.0f}s; log tail:\n{engine.log_tail()}", pytrace=False)


def _stop(engine: Engine) -> None:
    if engine.proc and engine.proc.poll() is None:
        engine.proc.terminate()
        try:
            engine.proc.wait(30)
        except subprocess.TimeoutExpired:
            engine.proc.kill()
            engine.proc.wait(10)


@pytest.fixture(scope="session")
def engine_logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("engines")


@pytest.fixture(scope="session")
def vllm_server(engine_logs: Path) -> Iterator[Engine]:
    _need(VLLM_PY)
    _need(HF_DIR / "config.json")
    port = free_port()
    argv = [str(VLLM_PY), "-m", "vllm.entrypoints.openai.api_server", "--model", str(HF_DIR),
            "--served-model-name", MODEL, "--host", "127.0.0.1", "--port", str(port),
            "--max-model-len", "2048", "--enforce-eager", "--dtype", "bfloat16", "--max-num-seqs", "16"]
    env = {"HF_HUB_OFFLINE": "1", "VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_TARGET_DEVICE": "cpu",
           "OMP_NUM_THREADS": str(os.cpu_count() or 2)}
    engine = _start("vllm", argv, f"http://127.0.0.1:{port}", "/health", engine_logs, 420, env)
    yield engine
    _stop(engine)


@pytest.fixture(scope="session")
def llamacpp_server(engine_logs: Path) -> Iterator[Engine]:
    _need(LLAMA_SERVER)
    _need(GGUF)
    port = free_port()
    argv = [str(LLAMA_SERVER), "-m", str(GGUF), "--alias", MODEL, "--host", "127.0.0.1", "--port", str(port),
            "-c", "4096", "--parallel", "4", "--metrics", "-t", str(os.cpu_count() or 2)]
    engine = _start("llamacpp", argv, f"http://127.0.0.1:{port}", "/health", engine_logs, 120)
    yield engine
    _stop(engine)


@pytest.fixture(scope="session")
def ollama_double() -> Iterator[Engine]:
    from doubles.ollama_double import serve

    server = serve(models=[MODEL], gpu=True, token_delay=0.003)
    port = server.server_address[1]
    yield Engine("ollama", f"http://127.0.0.1:{port}", MODEL, Path("/dev/null"))
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="session")
def ollama_double_cpu() -> Iterator[Engine]:
    """An Ollama double whose loaded model sits in system RAM (size_vram 0): a silent CPU fallback."""
    from doubles.ollama_double import serve

    server = serve(models=[MODEL], gpu=False, token_delay=0.003)
    yield Engine("ollama", f"http://127.0.0.1:{server.server_address[1]}", MODEL, Path("/dev/null"))
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="session")
def faulty_server() -> Iterator[str]:
    """Base URL of the misbehaving server; append /<mode> (see tests/doubles/faulty_server.py)."""
    from doubles.faulty_server import serve

    server = serve()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="session")
def llamacpp_with_key(engine_logs: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Engine, Path]]:
    """A second real llama-server that requires an API key; yields the engine and the key file."""
    _need(LLAMA_SERVER)
    key_file = tmp_path_factory.mktemp("secrets") / "api_key"
    key_file.write_text("sk-test-" + os.urandom(8).hex() + "\n")
    key_file.chmod(0o600)
    port = free_port()
    argv = [str(LLAMA_SERVER), "-m", str(GGUF), "--alias", MODEL, "--host", "127.0.0.1", "--port", str(port),
            "-c", "1024", "--api-key-file", str(key_file), "-t", "1"]
    engine = _start("llamacpp-key", argv, f"http://127.0.0.1:{port}", "/health", engine_logs, 120)
    yield engine, key_file
    _stop(engine)


def trust_templates(o: Any) -> Any:
    """Role YAML as Ansible loads it: every string trusted as a template (ansible-core 2.19), at any depth."""
    from ansible.template import trust_as_template

    if isinstance(o, str):
        return trust_as_template(o)
    if isinstance(o, dict):
        return {k: trust_templates(v) for k, v in o.items()}
    if isinstance(o, list):
        return [trust_templates(v) for v in o]
    return o
