"""vLLM's --api-key leaves routes open, and the catalogue says so: checked against the installed vLLM itself.

vLLM 0.32's AuthenticationMiddleware (vllm/entrypoints/serve/middleware/authenticate.py) checks the key only on
paths under GUARDED_PREFIX = ("/v1", "/v2", "/inference", "/cohere"); the SageMaker router, which the API server
always registers (vllm/entrypoints/launchers/api_server/routers.py -> serve/sagemaker/api_router.py), answers
POST /invocations with completions/chat. So a keyed vLLM published beyond loopback still serves anyone: the
catalogue (healthchecks/stack.yml ``api_key_open_routes``) lists /invocations for vLLM and the exposure rule
refuses it (tests/unit/test_exposure.py). Here vLLM's own middleware runs in front of vLLM's own SageMaker router
(in the vLLM venv tests/setup.sh builds), so a vLLM release that closes the gap makes this test fail and tells
us to update the catalogue.
"""

from __future__ import annotations

import json
import subprocess

import pytest
from conftest import VLLM_PY

from healthchecks import exposure, stack

pytestmark = pytest.mark.unit

# Runs in vLLM's venv: vLLM's GUARDED_PREFIX, the SageMaker router's paths, and what vLLM's middleware (with a
# key) answers to requests without it: /invocations reaches the router (not 401), /v1/... is refused (401).
PROBE = r"""
import json, logging
logging.disable(logging.CRITICAL)
from fastapi import FastAPI
from starlette.testclient import TestClient
from vllm.entrypoints.serve.middleware.authenticate import GUARDED_PREFIX, AuthenticationMiddleware
from vllm.entrypoints.serve.sagemaker.api_router import attach_router
app = FastAPI()
attach_router(app, ("generate",), None)
paths = sorted({getattr(r, "path", "") for r in app.routes})
app.add_middleware(AuthenticationMiddleware, tokens=["sk-the-key"])
client = TestClient(app, raise_server_exceptions=False)
bare = {p: client.post(p, json={}).status_code for p in ("/invocations", "/v1/completions")}
keyed = client.post("/v1/completions", json={}, headers={"Authorization": "Bearer sk-the-key"}).status_code
print(json.dumps({"guarded": list(GUARDED_PREFIX), "paths": paths, "bare": bare, "keyed": keyed}))
"""


@pytest.fixture(scope="module")
def vllm_probe() -> dict[str, object]:
    if not VLLM_PY.exists():
        pytest.skip(f"no vLLM venv at {VLLM_PY} (tests/setup.sh builds it)")
    r = subprocess.run([str(VLLM_PY), "-c", PROBE], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    out: dict[str, object] = json.loads(r.stdout.strip().splitlines()[-1])
    return out


def test_vllm_s_key_leaves_invocations_open_and_the_catalogue_says_so(vllm_probe: dict[str, object]) -> None:
    guarded = tuple(str(p) for p in vllm_probe["guarded"])  # type: ignore[attr-defined]
    assert "/invocations" in vllm_probe["paths"], vllm_probe  # type: ignore[operator]
    assert not "/invocations".startswith(guarded), guarded
    bare = vllm_probe["bare"]
    assert isinstance(bare, dict)
    assert bare["/v1/completions"] == 401 and vllm_probe["keyed"] != 401, vllm_probe  # the key is checked there
    assert bare["/invocations"] != 401, vllm_probe  # ... and not here: the router answered a request without it
    open_routes = exposure.open_routes()["vllm"]
    assert "/invocations" in open_routes
    assert not any(r.startswith(guarded) for r in open_routes), open_routes  # each listed route really is open
    assert exposure.key_gap("vllm") == "vLLM's API key does not guard every route (/invocations answers without it)"


def test_only_engines_cited_as_guarding_every_route_may_be_published_keyed() -> None:
    """llama.cpp and the gateway guard every inference route (stack.yml cites llama.cpp's server-http.cpp and
    LiteLLM's public_routes); an engine with a key file the catalogue says nothing about is taken as not guarding."""
    cat = stack.load()
    assert {e for e in cat.engines if exposure.key_file_setting(e, cat) and exposure.key_gap(e, cat) is None} \
        == {"llamacpp", "gateway"}
    assert exposure.key_gap("ollama") is None and exposure.key_gap("sglang") is None  # no key: refused as such
