"""One request through the router: each provider choice of a chain in order (failover), each retried after a
transient failure with the kit's backoff (:mod:`healthchecks.protocols.retry`); streams read through
:meth:`Http.stream`, the kit's one SSE reader. TTFT and E2EL run from the first attempt: a failover's cost is
part of what the user sees."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import httpx

from ...errors import ProtocolError
from ...protocols import Http, parse_json
from ...protocols.retry import backoff
from .choice import with_choice
from .failures import Failure, _Failed, _server_message, _transport, classify


@dataclass
class Answer:
    text: str = ""
    usage: dict[str, Any] = field(default_factory=dict)
    chunks: int = 0
    first: float | None = None  # perf_counter of the first chunk with choices
    last: float = 0.0
    itl: list[float] = field(default_factory=list)
    served_by: str | None = None
    request_id: str | None = None
    model: str = ""


@dataclass
class Outcome:
    answer: Answer | None
    failure: Failure | None  # the last failure (the one that ended the request, when answer is None)
    failed: list[Failure] = field(default_factory=list)  # every failed attempt, in order
    failovers: int = 0
    retries: int = 0


def _delta_text(ev: dict[str, Any]) -> str | None:
    choices = ev.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        return None
    c = choices[0]
    part = c.get("delta") if isinstance(c.get("delta"), dict) else c.get("message")
    if isinstance(part, dict):
        return str(part.get("content") or part.get("reasoning_content") or part.get("reasoning") or "")
    return str(c.get("text") or "")


async def _exchange(http: Http, body: dict[str, Any], choice: str, headers: Mapping[str, str]) -> Answer:
    """POST /v1/chat/completions once; streamed (SSE, through :meth:`Http.stream`) or not. Failures raise
    :class:`_Failed`. ``headers``: the user's extra headers (e.g. ``X-HF-Bill-To: org``); the token's
    Authorization header wins."""
    path = "/v1/chat/completions"
    url = http.base + path
    ans = Answer(model=str(body.get("model")))
    sent = {**headers, **http.headers()}
    try:
        if not body.get("stream"):
            await _whole(http, url, body, sent, choice, ans)
            return ans

        async def on_response(r: httpx.Response) -> None:
            if r.status_code >= 400:
                text = (await r.aread()).decode(errors="replace")
                raise _Failed(classify(r.status_code, text, r.headers, choice))
            ans.served_by = r.headers.get("x-inference-provider")
            ans.request_id = r.headers.get("x-request-id")

        done = False
        events = http.stream(path, body, "sse", strict=False, headers=sent, on_response=on_response)
        async with contextlib.aclosing(events):  # an error event ends the request: the response is closed
            async for ts, ev in events:
                if ev is None:  # data: [DONE]; the reader drains the rest, the connection stays reusable
                    done = True
                    continue
                if ev.get("error") is not None and not ev.get("choices"):
                    msg, _, _ = _server_message(json.dumps(ev), httpx.Headers())
                    raise _Failed(Failure("broken", f"error event mid-stream: {msg}", None, ans.request_id,
                                          ans.served_by, choice))
                piece = _delta_text(ev)
                if piece is not None:  # every chunk with choices counts, as in vllm bench serve
                    if ans.first is None:
                        ans.first = ts
                    else:
                        ans.itl.append(ts - ans.last)
                    ans.last = ts
                    ans.chunks += 1
                    ans.text += piece
                if isinstance(ev.get("usage"), dict) and ev["usage"]:
                    ans.usage = ev["usage"]
        if not done:
            raise _Failed(Failure("broken", "stream ended before data: [DONE] (cut mid-answer)", None,
                                  ans.request_id, ans.served_by, choice))
    except httpx.HTTPError as exc:
        f = _transport(exc, url, choice)
        raise _Failed(replace(f, request_id=ans.request_id, provider=ans.served_by)) from None
    except ProtocolError as exc:
        cause = exc.__cause__
        f = _transport(cause, url, choice) if isinstance(cause, httpx.HTTPError) \
            else Failure("broken", exc.reason, None, ans.request_id, ans.served_by, choice)
        raise _Failed(replace(f, request_id=ans.request_id, provider=ans.served_by)) from None
    return ans


async def _whole(http: Http, url: str, body: dict[str, Any], headers: Mapping[str, str], choice: str,
                 ans: Answer) -> None:
    """A non-streamed answer: the whole body, its headers naming the provider and the request."""
    r = await http.client.post(url, json=body, headers=headers)
    if r.status_code >= 400:
        raise _Failed(classify(r.status_code, r.text, r.headers, choice))
    ans.served_by = r.headers.get("x-inference-provider")
    ans.request_id = r.headers.get("x-request-id")
    obj = parse_json(r.text, "POST /v1/chat/completions")
    ans.last = time.perf_counter()
    piece = _delta_text(obj) if isinstance(obj, dict) else None
    if piece is None:
        raise _Failed(Failure("broken", "answer has no choices[0].message", None, ans.request_id, ans.served_by,
                              choice))
    ans.text, ans.chunks, ans.first = piece, 1, ans.last
    ans.usage = obj.get("usage") or {}


async def call(http: Http, base: str, chain: tuple[str, ...], body: dict[str, Any], retries: int,
               budget: float | None, rng: random.Random | None = None,
               headers: Mapping[str, str] | None = None) -> Outcome:
    """One request: each choice of ``chain`` in order (moving on after a failure another provider may not
    have), each retried up to ``retries`` times after a transient failure. ``budget``: seconds for the whole
    request (None: each attempt is bounded by the client's timeouts only). A Retry-After longer than the
    request may take (``budget``, else the client timeout), or a wait that would not fit in what is left of
    ``budget``, is not waited for: the request moves on (or ends)."""
    rng = rng or random.Random()
    start = time.perf_counter()
    out = Outcome(None, None)
    limit = budget if budget is not None else http.timeout

    def left() -> float | None:
        return None if budget is None else budget - (time.perf_counter() - start)

    for i, choice in enumerate(chain):
        if i:
            out.failovers += 1
        for attempt in range(retries + 1):
            remaining = left()
            if remaining is not None and remaining <= 0:
                out.failure = Failure("timeout", f"no complete answer within {budget:.0f}s", choice=choice)
                out.failed.append(out.failure)
                return out
            try:
                async with asyncio.timeout(remaining):
                    out.answer = await _exchange(http, {**body, "model": with_choice(base, choice)}, choice,
                                                 headers or {})
                out.failure = None
                return out
            except _Failed as exc:
                f = exc.failure
            except TimeoutError:
                f = Failure("timeout", f"no complete answer within {budget:.0f}s", choice=choice)
            out.failure = f
            out.failed.append(f)
            if not f.transient or attempt == retries:
                break
            wait = backoff(attempt, rng)
            if f.retry_after is not None:
                if f.retry_after > limit:
                    break
                wait = max(wait, f.retry_after)
            remaining = left()
            if remaining is not None and wait >= remaining:
                break
            out.retries += 1
            await asyncio.sleep(wait)
        assert out.failure is not None
        if not out.failure.moves_on or i == len(chain) - 1:
            break
    return out


