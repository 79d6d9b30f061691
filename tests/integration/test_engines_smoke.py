"""First smoke test per engine: one real chat completion with usage counts."""

from __future__ import annotations

import httpx
import pytest

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("fixture", ["vllm_server", "llamacpp_server", "ollama_double"])
def test_real_chat_completion(fixture: str, request: pytest.FixtureRequest) -> None:
    engine = request.getfixturevalue(fixture)
    r = httpx.post(
        engine.url + "/v1/chat/completions",
        json={"model": engine.model, "messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 16},
        timeout=120,
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == engine.model
    assert body["choices"][0]["message"]["content"].strip()
    usage = body["usage"]
    assert usage["prompt_tokens"] > 0
    assert 0 < usage["completion_tokens"] <= 16
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
