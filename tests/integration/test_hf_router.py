"""healthcheck and smoke-bench against Hugging Face's router, imitated on loopback (tests/doubles/hf_router.py,
built from HF's documentation): provider choices side by side, which provider served, failover, retries with
Retry-After, every error class with its fix and x-request-id, and token hygiene (a random token per run that
appears in no output, JSON, PNG or log)."""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from rich.console import Console

from healthchecks import hf_report

pytestmark = pytest.mark.integration
BIN = Path(sys.executable).parent
RID = re.compile(r"x-request-id [0-9a-f]{32}")


@dataclass
class Lab:
    url: str  # the router's /v1 base (openai error envelope)
    url_bare: str  # the same router answering errors as {"error": "..."}
    tokens: dict[str, str]  # role -> token
    files: dict[str, str]  # role -> 0600 token file
    routers: list  # the doubles' state (requests seen)
    home: Path  # an empty HF_HOME: no stored token from the machine running the tests
    tmp: Path


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    from doubles.hf_router import Token, serve

    tmp = tmp_path_factory.mktemp("hf")
    roles = {"good": Token(), "noperm": Token(inference=False), "broke": Token(credits=False),
             "picky": Token(disabled=frozenset({"together", "novita", "fireworks-ai"})), "bogus": None}
    tokens = {role: "hf_" + secrets.token_urlsafe(24) for role in roles}
    accepted = {tokens[r]: t for r, t in roles.items() if t is not None}
    files = {}
    for role, token in tokens.items():
        f = tmp / f"{role}.token"
        f.write_text(token + "\n")
        f.chmod(0o600)
        files[role] = str(f)
    server, state = serve(accepted)
    bare, bare_state = serve(accepted, envelope="bare")
    home = tmp / "hf-home"
    home.mkdir()
    yield Lab(f"http://127.0.0.1:{server.server_address[1]}/v1", f"http://127.0.0.1:{bare.server_address[1]}/v1",
              tokens, files, [state, bare_state], home, tmp)
    for s in (server, bare):
        s.shutdown()
        s.server_close()


def run(lab: Lab, tool: str, *args: str, env: dict[str, str] | None = None,
        timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """A CLI as a user runs it, with no token from this machine (HF_* cleared, an empty HF_HOME). Every run's
    output is checked for every token."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING_FACE"))}
    full = {**clean, "HF_HOME": str(lab.home), "COLUMNS": "250", **(env or {})}
    argv = [str(BIN / tool), *args]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=full)
    for token in lab.tokens.values():
        assert token not in r.stdout and token not in r.stderr, f"token printed by {tool} {args}"
        assert token not in " ".join(argv)
    assert "Traceback" not in r.stderr, r.stderr[-2000:]
    return r


def run_in_process(lab: Lab, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
                   *args: str) -> tuple[int, str, str]:
    """``healthcheck`` through its console-script function, in this process (the same code path, without an
    interpreter start per case): (exit code, stdout, stderr)."""
    from healthchecks.cli.healthcheck import main as healthcheck_main

    for name in [k for k in os.environ if k.startswith(("HF_", "HUGGING_FACE"))]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("HF_HOME", str(lab.home))
    capsys.readouterr()
    code = healthcheck_main(list(args))
    out, err = capsys.readouterr()
    for token in lab.tokens.values():
        assert token not in out and token not in err
    assert "Traceback" not in err
    return code, out, err


def assert_clean_files(lab: Lab, *paths: Path) -> None:
    for p in paths:
        data = p.read_bytes()
        for token in lab.tokens.values():
            assert token.encode() not in data, f"token in {p}"


def bench_json(r: subprocess.CompletedProcess[str], path: Path) -> dict[str, dict]:
    assert path.exists(), r.stdout[-3000:] + r.stderr[-3000:]
    return {e["label"]: e for e in json.loads(path.read_text())["endpoints"]}


def test_providers_side_by_side_auto_vs_explicit(lab: Lab) -> None:
    """One column and one JSON entry per provider choice, with the choice and who really served it."""
    out, png = lab.tmp / "side.json", lab.tmp / "side.png"
    r = run(lab, "smoke-bench", f"hf={lab.url}", "--model", "acme/chat-7b", "--providers",
            "auto,together,novita,cheapest", "--hf-token-file", lab.files["good"], "--num-prompts", "8",
            "--concurrency", "4", "--input-len", "16", "--output-len", "12", "--warmups", "0",
            "--no-gpu-sampling", "--json", str(out), "--plot", str(png))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    for label in ("hf/auto", "hf/together", "hf/novita", "hf/cheapest"):
        assert label in r.stdout
    assert "Hugging Face providers: auto vs explicit" in r.stdout  # the provider report beside the table
    rows = bench_json(r, out)
    assert set(rows) == {"hf/auto", "hf/together", "hf/novita", "hf/cheapest"}
    expect = {"hf/auto": "together", "hf/together": "together", "hf/novita": "novita", "hf/cheapest": "novita"}
    for label, e in rows.items():
        assert e["provider"] == label.split("/")[1]
        assert e["completed"] == 8 and e["failed"] == 0 and e["failovers"] == 0
        assert e["served_by"] == {expect[label]: 8}, (label, e["served_by"])
        assert e["median_ttft_ms"] > 0 and e["output_throughput"] > 0
    # the double's novita waits 100 ms before its first token, together 4 ms: the run must see it
    assert rows["hf/novita"]["median_ttft_ms"] >= 100 and rows["hf/cheapest"]["median_ttft_ms"] >= 100
    assert rows["hf/together"]["median_ttft_ms"] < rows["hf/novita"]["median_ttft_ms"]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert_clean_files(lab, out, png)
    # the token was really sent (the router accepted it), so its absence above means something
    seen = [s for s in lab.routers[0].attempts("acme/chat-7b") if s.status == 200]
    assert len(seen) >= 32 and all(s.token_valid for s in seen)

    report = hf_report.rows(json.loads(out.read_text())["endpoints"])
    assert [(x["provider"], x["served_by"], x["success_rate"]) for x in report] == [
        ("auto", {"together": 8}, 1.0), ("together", {"together": 8}, 1.0), ("novita", {"novita": 8}, 1.0),
        ("cheapest", {"novita": 8}, 1.0)]
    view = hf_report.table(report)
    assert view is not None
    console = Console(record=True, width=200)
    console.print(view)
    text = console.export_text()
    assert "cheapest" in text and "novita 8" in text and "8/8 (100%)" in text


def test_failover_completes_every_request_while_providers_fail(lab: Lab) -> None:
    """sambanova answers 503, slowpoke sends nothing within --timeout: every request ends on nebius."""
    out = lab.tmp / "failover.json"
    r = run(lab, "smoke-bench", f"hf={lab.url}", "--model", "acme/flaky-8b", "--providers",
            "sambanova,slowpoke,nebius", "--failover", "--timeout", "0.5", "--hf-token-file", lab.files["good"],
            "--num-prompts", "6", "--concurrency", "3", "--output-len", "8", "--warmups", "0",
            "--no-gpu-sampling", "--json", str(out))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    (e,) = bench_json(r, out).values()
    assert e["label"] == "hf/sambanova>slowpoke>nebius" and e["provider"] == "sambanova,slowpoke,nebius"
    assert e["completed"] == 6 and e["failed"] == 0
    assert e["served_by"] == {"nebius": 6}
    assert e["failovers"] == 12  # two moves per request, counted over all requests
    assert e["median_ttft_ms"] >= 500  # the timeout spent on slowpoke is part of what the user waited
    # the run's own clock, not this test's: on CI's two loaded cores smoke-bench's start-up can take many seconds
    assert e["duration"] < 20
    # every request's x-request-id, and every failed attempt's, as the router sent them
    seen = {s.request_id: s for s in lab.routers[0].attempts("acme/flaky-8b")}
    assert len(e["request_ids"]) == 6
    assert all(seen[rid].provider == "nebius" and seen[rid].status == 200 for rid in e["request_ids"])
    for attempts in e["failed_attempts"]:
        assert len(attempts) == 2 and attempts[0].startswith("sambanova: ") and attempts[1].startswith("slowpoke: ")
        rid = attempts[0].rsplit(" ", 1)[1]
        assert seen[rid].provider == "sambanova" and seen[rid].status == 503
    assert_clean_files(lab, out)


def test_a_stream_cut_mid_answer_moves_to_the_next_provider(lab: Lab) -> None:
    out = lab.tmp / "cut.json"
    r = run(lab, "smoke-bench", f"hf={lab.url}", "--model", "acme/flaky-8b", "--providers", "cutter,nebius",
            "--failover", "--hf-token-file", lab.files["good"], "--num-prompts", "4", "--output-len", "8",
            "--warmups", "0", "--no-gpu-sampling", "--json", str(out))
    assert r.returncode == 0, r.stderr[-3000:]
    (e,) = bench_json(r, out).values()
    assert e["completed"] == 4 and e["served_by"] == {"nebius": 4} and e["failovers"] == 4
    assert e["output_lens"] == [8, 8, 8, 8]  # the restarted answers, not the cut ones


def test_served_by_is_null_without_the_header(lab: Lab, capsys: pytest.CaptureFixture[str],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    out = lab.tmp / "anon.json"
    r = run(lab, "smoke-bench", f"hf={lab.url}", "--model", "acme/flaky-8b:hidden", "--hf-token-file",
            lab.files["good"], "--num-prompts", "2", "--output-len", "4", "--warmups", "0", "--no-gpu-sampling",
            "--json", str(out))
    assert r.returncode == 0, r.stderr[-3000:]
    (e,) = bench_json(r, out).values()
    assert e["completed"] == 2 and e["served_by"] is None and e["provider"] == "hidden"
    code, text, _ = run_in_process(lab, capsys, monkeypatch, f"hf={lab.url}", "--model", "acme/flaky-8b:hidden",
                                   "--hf-token-file", lab.files["good"], "--no-diagnose", "--json")
    assert code == 0
    rows = {c["name"]: c for c in json.loads(text)["endpoints"][0]["checks"]}
    assert rows["completion"]["reason"].startswith("served by unknown (no x-inference-provider header)")


def test_a_failing_provider_without_failover_is_reported_by_class(lab: Lab) -> None:
    out = lab.tmp / "nofailover.json"
    r = run(lab, "smoke-bench", f"hf={lab.url}", "--model", "acme/chat-7b", "--providers", "fireworks-ai,together",
            "--hf-token-file", lab.files["good"], "--num-prompts", "4", "--output-len", "8", "--warmups", "0",
            "--no-gpu-sampling", "--json", str(out))
    assert r.returncode == 1  # an endpoint completed nothing
    rows = bench_json(r, out)
    bad, good = rows["hf/fireworks-ai"], rows["hf/together"]
    assert bad["completed"] == 0 and good["completed"] == 4
    errors = bad.get("error_counts", bad.get("errors"))
    assert list(errors.values()) == [4]  # one class, however many request ids
    (reason,) = errors
    assert "provider failed upstream (503) [fireworks-ai]: " in reason and "--failover" in reason
    # one class in the counts, yet each failure keeps its own x-request-id (what HF support asks for)
    seen = {s.request_id: s for s in lab.routers[0].attempts("acme/chat-7b")}
    # vLLM's rule: the initial test request failed, so no other request was sent; its id is the first entry
    rid, *unsent = bad["request_ids"]
    assert seen[rid].provider == "fireworks-ai" and seen[rid].status == 503 and unsent == [None] * 3
    assert bad["failed_attempts"][0] == [f"fireworks-ai: upstream 503 x-request-id {rid}"]
    assert all(seen[rid].provider == "together" and seen[rid].status == 200 for rid in good["request_ids"])
    assert re.search(r"hf/fireworks-ai: 4 failed: .*provider failed upstream \(503\)", r.stderr)


def test_retries_wait_for_retry_after(lab: Lab) -> None:
    """groq lets every second request through and answers the others 429 with Retry-After: 1."""
    state = lab.routers[0]
    before = len(state.attempts("acme/flaky-8b:groq"))
    out = lab.tmp / "retries.json"
    r = run(lab, "smoke-bench", f"hf={lab.url}", "--model", "acme/flaky-8b:groq", "--retries", "2",
            "--hf-token-file", lab.files["good"], "--num-prompts", "2", "--concurrency", "1", "--output-len", "4",
            "--warmups", "0", "--no-gpu-sampling", "--json", str(out))
    assert r.returncode == 0, r.stderr[-3000:]
    (e,) = bench_json(r, out).values()
    assert e["completed"] == 2 and e["served_by"] == {"groq": 2} and e["provider"] == "groq"
    seen = state.attempts("acme/flaky-8b:groq")[before:]
    limited = [i for i, s in enumerate(seen) if s.status == 429]
    assert limited, "the double rate-limited nothing: the test proves nothing"
    for i in limited:
        assert seen[i + 1].at - seen[i].at >= 1.0, "retried before Retry-After"
    # retries of the measured requests (an unmeasured initial test request may have spent some too)
    assert 1 <= e["hf"]["retries"] <= len(limited)


def test_retry_after_longer_than_the_request_is_not_waited_for(lab: Lab) -> None:
    """hyperbolic always answers 429 with Retry-After: 30; a 5 s request gives up at once, after one attempt."""
    state = lab.routers[0]
    before = len(state.attempts("acme/flaky-8b:hyperbolic"))
    t0 = time.monotonic()
    out = lab.tmp / "ra.json"
    r = run(lab, "smoke-bench", f"hf={lab.url}", "--model", "acme/flaky-8b:hyperbolic", "--retries", "3",
            "--request-timeout", "5", "--hf-token-file", lab.files["good"], "--num-prompts", "1", "--output-len",
            "4", "--warmups", "0", "--no-gpu-sampling", "--json", str(out))
    assert r.returncode == 1 and time.monotonic() - t0 < 15  # not the 30 s the router asked for
    assert len(state.attempts("acme/flaky-8b:hyperbolic")) - before == 1  # not retried despite --retries 3
    (e,) = bench_json(r, out).values()
    assert len(e.get("error_counts", e.get("errors"))) == 1
    assert "rate limited (429) [hyperbolic]" in r.stderr


def test_healthcheck_per_provider_names_who_served(lab: Lab) -> None:
    r = run(lab, "healthcheck", f"hf={lab.url}", "--model", "acme/chat-7b", "--providers", "auto,together,cheapest",
            "--no-diagnose", "--json", env={"HF_TOKEN": lab.tokens["good"]})
    assert r.returncode == 0, r.stdout[-4000:]
    doc = json.loads(r.stdout)
    reports = {e["name"]: {c["name"]: c for c in e["checks"]} for e in doc["endpoints"]}
    assert set(reports) == {"hf/auto", "hf/together", "hf/cheapest"}
    for name, served in (("hf/auto", "together"), ("hf/together", "together"), ("hf/cheapest", "novita")):
        rows = reports[name]
        for step in ("liveness", "readiness", "token", "providers", "completion", "stream", "auth"):
            assert rows[step]["status"] == "pass", (name, step, rows[step])
        assert rows["token"]["reason"] == "from $HF_TOKEN"
        assert rows["completion"]["reason"].startswith(f"served by {served}: ")
        assert rows["stream"]["reason"].startswith(f"served by {served}: SSE: ")
        assert RID.search(rows["completion"]["reason"])
        providers = rows["providers"]["reason"]
        assert "together live (TTFT 300 ms, 60.0 tok/s, $0.20/$0.60 per M in/out)" in providers
        assert "featherless-ai error" in providers
    assert "4 models, 3 with a live provider" in reports["hf/auto"]["liveness"]["reason"]


def test_healthcheck_failover_moves_on_and_says_so(lab: Lab) -> None:
    r = run(lab, "healthcheck", f"hf={lab.url}", "--model", "acme/chat-7b", "--providers",
            "fireworks-ai,featherless-ai,novita", "--failover", "--hf-token-file", lab.files["good"],
            "--no-diagnose", "--json")
    assert r.returncode == 0, r.stdout[-3000:]  # a chain member listed in error is a warning; novita answers
    (e,) = json.loads(r.stdout)["endpoints"]
    rows = {c["name"]: c for c in e["checks"]}
    assert rows["providers"]["status"] == "warn" and "featherless-ai is error" in rows["providers"]["reason"]
    completion = rows["completion"]["reason"]
    assert rows["completion"]["status"] == "pass" and completion.startswith("served by novita")
    assert "after fireworks-ai: provider failed upstream (503)" in completion
    assert "featherless-ai: provider failed upstream (503)" in completion
    assert len(RID.findall(completion)) == 3  # the answer's and both failures'


# (model, token role, extra flags, the failing row, words of the class, the fix's words)
CLASSES = [
    ("acme/chat-7b", "bogus", [], "liveness", "invalid token (401)", "huggingface.co/settings/tokens"),
    ("acme/chat-7b", "noperm", [], "completion", "token lacks the Inference Providers permission (403)",
     "Make calls to Inference Providers"),
    ("acme/gated-2b", "good", [], "completion", "gated model (403)", "huggingface.co/acme/gated-2b"),
    ("acme/chat-7b", "broke", [], "completion", "credits exhausted (402)", "settings/billing"),
    ("acme/flaky-8b:hyperbolic", "good", [], "completion", "rate limited (429)", "Retry-After"),
    ("acme/chat-7b", "picky", [], "completion", "model not supported by any enabled provider (400)",
     "settings/inference-providers"),
    ("acme/chat-7b:fireworks-ai", "good", [], "completion", "provider failed upstream (503)", "--failover"),
    ("acme/flaky-8b:slowpoke", "good", ["--timeout", "0.5"], "completion", "timeout", "raise --timeout"),
    ("acme/flaky-8b:cutter", "good", [], "stream", "broken answer: stream ended before data: [DONE]", "--retries"),
]


CASES = [(envelope, *c) for c in CLASSES for envelope in ("openai", "bare")
         if envelope == "openai" or not c[4].startswith(("timeout", "broken"))]  # transport failures: no envelope


@pytest.mark.parametrize(("envelope", "model", "role", "flags", "row", "words", "fix"), CASES,
                         ids=[f"{c[5].split(' (')[0].split(':')[0].replace(' ', '_')}-{c[0]}" for c in CASES])
def test_healthcheck_names_every_error_class(lab: Lab, capsys: pytest.CaptureFixture[str],
                                             monkeypatch: pytest.MonkeyPatch, envelope: str, model: str, role: str,
                                             flags: list[str], row: str, words: str, fix: str) -> None:
    url = lab.url if envelope == "openai" else lab.url_bare
    state = lab.routers[0 if envelope == "openai" else 1]
    before = len(state.seen)
    code, out, err = run_in_process(
        lab, capsys, monkeypatch, f"hf={url}", "--model", model, "--hf-token-file", lab.files[role],
        "--retries", "2" if words.startswith(("token", "gated", "credits", "invalid", "model")) else "0",
        "--no-diagnose", *flags)
    assert code == 1, out[-3000:]
    line = next(x for x in err.splitlines() if x.startswith("UNHEALTHY "))
    assert f": {row}: {words}" in line and "; fix: " in line and fix in line, line
    if words == "timeout":
        assert "x-request-id none (no answer)" in line
    elif words.startswith("broken"):
        assert "served by" not in line and RID.search(line), line  # the cut answer's own request id
    else:
        assert RID.search(line), line
    if row == "completion" and words.startswith(("token", "gated", "credits", "model")):
        # permanent classes are never retried, whatever --retries says: one completion, one stream
        posts = [s for s in state.seen[before:] if s.model.startswith(model.split(":")[0]) and s.status != 401]
        assert len(posts) == 2, posts


def test_token_file_readable_by_others_is_a_warning_and_never_printed(lab: Lab) -> None:
    loose = lab.tmp / "loose.token"
    loose.write_text(lab.tokens["good"] + "\n")
    loose.chmod(0o644)
    r = run(lab, "healthcheck", f"hf={lab.url}", "--model", "acme/chat-7b", "--hf-token-file", str(loose),
            "--no-diagnose")
    assert r.returncode == 0  # a warning, not a failure
    assert "readable by group and others (mode 0644)" in r.stdout and f"chmod 600 {loose}" in r.stdout
    # huggingface_hub's stored token, found without any flag
    (lab.home / "token").write_text(lab.tokens["good"])
    (lab.home / "token").chmod(0o600)
    try:
        r = run(lab, "healthcheck", f"hf={lab.url}", "--model", "acme/chat-7b", "--no-diagnose", "--json")
    finally:
        (lab.home / "token").unlink()
    assert r.returncode == 0, r.stdout[-3000:]
    rows = {c["name"]: c for c in json.loads(r.stdout)["endpoints"][0]["checks"]}
    assert rows["token"]["reason"] == f"from file {lab.home / 'token'} (0600)"


@pytest.mark.parametrize(("args", "words"), [
    (["--providers", "auto,,x"], "--providers 'auto,,x': empty item"),
    (["--providers", "auto,together", "--failover", "--retries", "-1"], "--retries must be between 0 and 10"),
    (["--failover", "--providers", "together"], "--failover needs at least two --providers"),
])
def test_bad_hf_flags_exit_2_in_one_line(lab: Lab, args: list[str], words: str) -> None:
    for tool, extra in (("healthcheck", []), ("smoke-bench", ["--num-prompts", "1"])):
        r = run(lab, tool, f"hf={lab.url}", "--model", "acme/chat-7b", "--hf-token-file", lab.files["good"],
                *args, *extra)
        assert r.returncode == 2, (tool, r.stderr)
        assert words in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_no_token_and_hf_flags_without_hf_are_config_errors(lab: Lab) -> None:
    r = run(lab, "smoke-bench", f"hf={lab.url}", "--model", "acme/chat-7b", "--num-prompts", "1")
    assert r.returncode == 2 and "no Hugging Face token" in r.stderr and "hf auth login" in r.stderr
    r = run(lab, "healthcheck", "openai=http://127.0.0.1:9", "--providers", "auto,together")
    assert r.returncode == 2 and "apply to hf endpoints only" in r.stderr
