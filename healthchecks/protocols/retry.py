"""Waiting before a retry, for every client of the kit: exponential backoff with jitter, and the server's
``Retry-After``. Nothing retries by itself (httpx does not): a caller that retries says so and counts it."""

from __future__ import annotations

import random

import httpx

BACKOFF_BASE_S = 0.5  # first retry waits 0.5 s x jitter, then 1, 2, 4 ... capped
BACKOFF_CAP_S = 8.0


def backoff(attempt: int, rng: random.Random, *, cap: float = BACKOFF_CAP_S) -> float:
    """Exponential backoff with jitter: 0.5, 1, 2, 4, 8 s (capped at ``cap``) x uniform(0.5, 1.5); ``attempt``
    counts from 0."""
    return min(cap, BACKOFF_BASE_S * 2**attempt) * rng.uniform(0.5, 1.5)


def retry_after(headers: httpx.Headers) -> float | None:
    """``Retry-After`` in seconds (delay-seconds form; an HTTP date is taken as 'unknown', as huggingface_hub
    does)."""
    value = (headers.get("retry-after") or "").strip()
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None
