"""A real headless browser for the tests: Debian's chromium (tests/setup.sh installs it). Opens a page from
file:// with no server, prints its DOM after layout, takes screenshots, and reads the PNG back."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest

CANDIDATES = ("chromium", "chromium-browser", "google-chrome")


def chromium() -> str:
    for name in CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    pytest.fail("no chromium on this machine: run `bash tests/setup.sh` (apt-get install -y chromium)", pytrace=False)


def _run(args: list[str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    with tempfile.TemporaryDirectory(prefix="gik-chromium-") as profile:
        # root needs --no-sandbox; a profile of its own per run (parallel runs never share one); no network
        argv = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                f"--user-data-dir={profile}", "--no-first-run", "--disable-extensions",
                "--proxy-server=127.0.0.1:9", "--hide-scrollbars", *args]
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout)


def dump_dom(page: Path) -> str:
    """The DOM chromium built from the page (file://, scripts or not), as --dump-dom prints it."""
    r = _run(["--dump-dom", page.resolve().as_uri()])
    assert r.returncode == 0 and "<html" in r.stdout, r.stderr[-2000:]
    return r.stdout


def screenshot(page: Path, png: Path, size: tuple[int, int] = (1400, 1000)) -> Path:
    r = _run([f"--screenshot={png}", f"--window-size={size[0]},{size[1]}", page.resolve().as_uri()])
    assert r.returncode == 0 and png.is_file(), r.stderr[-2000:]
    return png


def pixels(png: Path) -> Any:
    """The screenshot as an array of RGB(A) floats 0..1 (matplotlib reads PNG itself)."""
    import matplotlib.image

    return matplotlib.image.imread(str(png))


def share_near(img: Any, rgb: tuple[int, int, int], tol: int = 24) -> float:
    """The share of pixels within ``tol`` (0..255) of ``rgb`` on every channel."""
    import numpy as np

    px = np.asarray(img)[..., :3] * 255.0
    close = np.all(np.abs(px - np.array(rgb, dtype=float)) <= tol, axis=-1)
    return float(close.mean())
