"""The hf engine's pure logic: provider choice by model suffix, error classes from both of the router's
envelopes, Retry-After and backoff, the token by huggingface_hub's order, and how --providers/--failover turn
one hf endpoint into the endpoints that are checked and benchmarked."""

from __future__ import annotations

import argparse
import random
from pathlib import Path

import httpx
import pytest

from healthchecks.endpoints.url import Endpoint
from healthchecks.engines import ENGINES
from healthchecks.engines.hf import HuggingFace, choice, failures, token
from healthchecks.errors import ConfigError
from healthchecks.protocols import retry

pytestmark = pytest.mark.unit
ENGINE = ENGINES["hf"]


def test_registered_but_never_detected_by_probing() -> None:
    assert isinstance(ENGINE, HuggingFace)
    for status, text in ((200, '{"object":"list","data":[{"id":"a/b","providers":[]}]}'), (401, ""), (403, "")):
        assert ENGINE.recognise(status, text) is False
    assert ENGINE.apis == ("chat",) and ENGINE.auth_probe == ("POST", "/v1/chat/completions")


@pytest.mark.parametrize(("model", "split"), [
    ("org/m", ("org/m", "auto")), ("org/m:together", ("org/m", "together")), ("org/m:fastest", ("org/m", "fastest")),
    ("org/m:fireworks-ai", ("org/m", "fireworks-ai")), ("m", ("m", "auto")),
])
def test_model_suffix(model: str, split: tuple[str, str]) -> None:
    assert choice.split_choice(model) == split
    assert choice.with_choice(*split) == model


def test_parse_providers() -> None:
    assert choice.parse_providers("auto, Together,novita") == ("auto", "together", "novita")
    for bad, words in (("auto,,x", "empty item"), ("auto,to gether", "not a provider name"),
                       ("x,x", "given twice"), ("a/b", "not a provider name")):
        with pytest.raises(ConfigError, match=words):
            choice.parse_providers(bad)


def _h(**kw: str) -> httpx.Headers:
    return httpx.Headers({k.replace("_", "-"): v for k, v in kw.items()})


OPENAI = '{{"error": {{"message": "{m}", "type": "{t}", "param": null, "code": "{c}"}}}}'
BARE = '{{"error": "{m}"}}'


@pytest.mark.parametrize("envelope", ["openai", "bare"])
@pytest.mark.parametrize(("status", "message", "typ", "code", "kind"), [
    (401, "Invalid credentials in Authorization header", "authentication_error", "invalid_api_key", "auth"),
    (403, "This authentication method does not have sufficient permissions to call Inference Providers on "
          "behalf of user u", "permission_error", "insufficient_permissions", "permission"),
    (403, "Access to model org/g is restricted and you are not in the authorized list. Visit "
          "https://huggingface.co/org/g to ask for access.", "invalid_request_error", "gated_repo", "gated"),
    (402, "You have exceeded your monthly included credits for Inference Providers.", "insufficient_quota",
     "insufficient_quota", "credits"),
    (429, "Rate limit reached", "rate_limit_error", "rate_limit_exceeded", "rate_limited"),
    (400, "The requested model 'org/x' is not supported by any provider you have enabled.",
     "invalid_request_error", "model_not_supported", "model_not_supported"),
    (400, "Model org/x is not supported by provider groq", "invalid_request_error", "model_not_supported",
     "model_not_supported"),
    (503, "novita returned 503", "server_error", "upstream_error", "upstream"),
    (502, "bad gateway", "server_error", "", "upstream"),
    (400, "max_tokens must be positive", "invalid_request_error", "invalid_value", "bad_request"),
])
def test_error_classes_from_both_envelopes(envelope: str, status: int, message: str, typ: str, code: str,
                                           kind: str) -> None:
    body = (OPENAI if envelope == "openai" else BARE).format(m=message, t=typ, c=code)
    f = failures.classify(status, body, _h(x_request_id="rid-1", x_inference_provider="novita"), "novita")
    assert f.kind == kind, (envelope, message)
    reason = f.reason("org/x:novita")
    assert "x-request-id rid-1" in reason and "fix: " in reason and message[:30] in reason
    assert "\n" not in reason
    assert f.transient == (kind in {"rate_limited", "upstream"})
    assert f.moves_on == (kind in {"rate_limited", "upstream", "credits", "model_not_supported"})
    assert "rid-1" not in f.key("org/x:novita")  # the benchmark's error class is stable across requests


def test_other_error_shapes() -> None:
    assert failures.classify(403, '{"error": ["a", "b"]}', _h()).message == "a; b"
    html = failures.classify(502, "<!DOCTYPE html><html><title>502</title></html>", _h())
    assert html.kind == "upstream" and "HTML page" in html.message
    assert failures.classify(500, "", _h(x_error_message="boom")).message == "boom"
    gated = failures.classify(403, '{"error": "nope"}', _h(x_error_code="GatedRepo"))
    assert gated.kind == "gated" and "huggingface.co/org/g" in gated.fix("org/g:together")
    assert "none (no answer)" in failures.Failure("timeout", "read timeout").reason("m")


def test_retry_after_and_backoff() -> None:
    assert retry.retry_after(_h(retry_after="3")) == 3.0
    assert retry.retry_after(_h(retry_after="Wed, 21 Oct 2015 07:28:00 GMT")) is None  # as huggingface_hub
    assert retry.retry_after(_h()) is None
    rng = random.Random(1)
    for attempt, (lo, hi) in enumerate([(0.25, 0.75), (0.5, 1.5), (1, 3), (2, 6), (4, 12), (4, 12)]):
        waits = [retry.backoff(attempt, rng) for _ in range(200)]
        assert lo <= min(waits) and max(waits) <= hi, attempt
        assert max(waits) - min(waits) > (hi - lo) / 2  # jitter, not a fixed delay


# -- token ----------------------------------------------------------------------------------------------
def _token_file(path: Path, text: str = "hf_abc", mode: int = 0o600) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")
    path.chmod(mode)
    return str(path)


def test_token_order_is_huggingface_hubs(tmp_path: Path) -> None:
    explicit = _token_file(tmp_path / "explicit")
    via_path = _token_file(tmp_path / "via_path")
    home = tmp_path / "home"
    stored = _token_file(home / "token")
    env = {"HF_TOKEN": "hf_env", "HUGGING_FACE_HUB_TOKEN": "hf_old", "HF_TOKEN_PATH": via_path, "HF_HOME": str(home)}
    assert token.resolve_token(explicit, env).file == explicit
    assert token.resolve_token(None, env).env == "HF_TOKEN"
    assert token.resolve_token(None, {**env, "HF_TOKEN": " "}).env == "HUGGING_FACE_HUB_TOKEN"
    no_env = {k: v for k, v in env.items() if not k.startswith(("HF_TOKEN", "HUGGING"))}
    assert token.resolve_token(None, {**no_env, "HF_TOKEN_PATH": via_path}).file == via_path
    assert token.resolve_token(None, no_env).file == stored
    xdg = tmp_path / "xdg"
    in_xdg = _token_file(xdg / "huggingface" / "token")
    assert token.resolve_token(None, {"XDG_CACHE_HOME": str(xdg)}).file == in_xdg
    src = token.resolve_token(None, env)
    assert "hf_env" not in repr(src)  # the source names the variable, never the value


def test_token_problems_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"--hf-token-file: token file .* cannot be read"):
        token.resolve_token(str(tmp_path / "missing"), {})
    with pytest.raises(ConfigError, match="is empty"):
        token.resolve_token(_token_file(tmp_path / "empty", ""), {})
    with pytest.raises(ConfigError, match=r"HF_TOKEN_PATH=.* does not exist"):
        token.resolve_token(None, {"HF_TOKEN_PATH": str(tmp_path / "nope")})
    with pytest.raises(ConfigError, match=r"no Hugging Face token.*hf auth login"):
        token.resolve_token(None, {"HF_HOME": str(tmp_path / "empty-home")})
    with pytest.raises(ConfigError, match="more than one word"):
        token.resolve_token(_token_file(tmp_path / "two", "hf_a hf_b"), {})


def test_token_file_readable_by_others_is_a_warning(tmp_path: Path) -> None:
    assert token.resolve_token(_token_file(tmp_path / "ok"), {}).warning == ""
    loose = _token_file(tmp_path / "loose", mode=0o644)
    w = token.resolve_token(loose, {}).warning
    assert "readable by group and others (mode 0644)" in w and f"chmod 600 {loose}" in w
    assert "its group" in token.resolve_token(_token_file(tmp_path / "g", mode=0o640), {}).warning


# -- configure: --providers, --failover, --retries ------------------------------------------------------
def _args(**kw: object) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    ENGINE.add_arguments(p)
    ns = p.parse_args([])
    ns.api_key_file = None
    for k, v in kw.items():
        setattr(ns, k, v)
    return ns


ROUTER = Endpoint("hf", "https://router.huggingface.co", model="org/m")
LOCAL = Endpoint("vllm", "http://127.0.0.1:8000", model="m", api_key_file="/etc/vllm-key")


@pytest.fixture
def token_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_TOKEN_PATH", "XDG_CACHE_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    return _token_file(tmp_path / "tok")


def test_providers_expand_one_endpoint_per_choice(token_env: str) -> None:
    eps = ENGINE.configure(_args(providers="auto,together,cheapest", hf_token_file=token_env), [LOCAL, ROUTER])
    assert eps[0] == LOCAL
    hf_eps = eps[1:]
    assert [e.model for e in hf_eps] == ["org/m", "org/m:together", "org/m:cheapest"]
    assert [e.label for e in hf_eps] == ["hf/auto", "hf/together", "hf/cheapest"]
    assert [e.meta["provider"] for e in hf_eps] == ["auto", "together", "cheapest"]
    assert all(e.api_key_file == token_env and e.api_key_env is None for e in hf_eps)
    assert ENGINE.chain_for("org/m:together") == ("org/m", ("together",))


def test_failover_is_one_endpoint_with_a_chain(token_env: str) -> None:
    (ep,) = ENGINE.configure(_args(providers="together,novita,auto", failover=True, retries=2,
                                   hf_token_file=token_env), [ROUTER])
    assert ep.model == "org/m" and ep.label == "hf/together>novita>auto"
    assert ep.meta["provider"] == "together,novita,auto" == ep.meta["failover"]
    assert ENGINE.chain_for(ep.model) == ("org/m", ("together", "novita", "auto"))
    assert ENGINE.settings.retries == 2


def test_a_lab_key_for_every_endpoint_never_goes_to_the_cloud(token_env: str, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    lab_key = _token_file(tmp_path / "vllm-key", "sk-lab")
    monkeypatch.setenv("HF_TOKEN", "hf_from_env")
    shared = Endpoint("hf", ROUTER.url, model="org/m", api_key_file=lab_key)
    (ep,) = ENGINE.configure(_args(api_key_file=[lab_key]), [shared])
    assert ep.api_key_file is None and ep.api_key_env == "HF_TOKEN"


def test_a_key_file_for_hf_alone_is_the_token(token_env: str, tmp_path: Path) -> None:
    own_key = _token_file(tmp_path / "hf-key", mode=0o640)
    own = Endpoint("hf", ROUTER.url, model="org/m", api_key_file=own_key)
    (ep,) = ENGINE.configure(_args(api_key_file=["/etc/vllm-key", f"hf={own_key}"]), [own])  # no HF token else
    assert ep.api_key_file == own_key and ep.api_key_env is None
    assert "readable by its group" in ENGINE.settings.token.warning and ENGINE.notes() == [
        ENGINE.settings.token.warning]
    (ep,) = ENGINE.configure(_args(api_key_file=[f"hf={own_key}"], hf_token_file=token_env), [own])
    assert ep.api_key_file == token_env  # --hf-token-file wins


def test_model_suffix_without_providers(token_env: str) -> None:
    (ep,) = ENGINE.configure(_args(hf_token_file=token_env), [Endpoint("hf", ROUTER.url, model="org/m:novita")])
    assert ep.label == "hf/novita" and ep.meta["provider"] == "novita" and ep.model == "org/m:novita"


@pytest.mark.parametrize(("kw", "words"), [
    ({"providers": "auto,together"}, "apply to hf endpoints only"),
    ({"retries": 2}, "apply to hf endpoints only"),
    ({"failover": True}, "apply to hf endpoints only"),
])
def test_hf_flags_without_hf_endpoint(token_env: str, kw: dict[str, object], words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        ENGINE.configure(_args(**kw), [LOCAL])
    assert ENGINE.configure(_args(), [LOCAL]) == [LOCAL]


@pytest.mark.parametrize(("ep", "kw", "words"), [
    (ROUTER, {"retries": -1}, "--retries must be between 0 and 10"),
    (ROUTER, {"retries": 11}, "--retries must be between 0 and 10"),
    (ROUTER, {"providers": "together", "failover": True}, "at least two --providers"),
    (Endpoint("hf", ROUTER.url), {"providers": "auto,together"}, "--providers needs --model"),
    (Endpoint("hf", ROUTER.url, model="org/m:x"), {"providers": "auto,together"}, "already names a provider"),
    (Endpoint("hf", ROUTER.url, model="org/m:Bad Name"), {}, "not a provider choice"),
])
def test_bad_settings_fail_naming_the_flag(token_env: str, ep: Endpoint, kw: dict[str, object], words: str
                                          ) -> None:
    with pytest.raises(ConfigError, match=words):
        ENGINE.configure(_args(hf_token_file=token_env, **kw), [ep])


def test_no_token_anywhere_is_a_config_error(token_env: str) -> None:
    with pytest.raises(ConfigError, match="no Hugging Face token"):
        ENGINE.configure(_args(), [ROUTER])
