"""pyinfra's verify reads each keyed engine's key on the controller: the lab's key file, or, for a key given
through the vault alone (no file on the controller), a 0600 copy made for the run and removed at its end. Before,
verify was handed the text "None" as the key file of a vault-only key and healthcheck could not read it."""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "pyinfra"))

import gik_ops  # noqa: E402

from healthchecks import stack  # noqa: E402

CAT = stack.load()
SECRETS = {"hf_token": "hf_x\n", "vllm_api_key": "sk-vault-only\n", "llamacpp_api_key": ""}


def test_a_vault_only_key_gets_a_private_controller_copy(tmp_path: Path) -> None:
    given_file = tmp_path / "llama_key"
    given_file.write_text("sk-file\n")
    out = gik_ops.verify_key_files(["vllm", "llamacpp"], CAT, {**SECRETS, "llamacpp_api_key": "sk-file\n"},
                                   {"vllm": None, "llamacpp": str(given_file)})
    assert out["llamacpp"] == str(given_file)  # the lab's own file
    copy = Path(out["vllm"])
    assert copy != Path("None") and copy.read_text() == "sk-vault-only\n"
    assert stat.S_IMODE(copy.stat().st_mode) == 0o600
    copy.unlink()


def test_an_engine_without_a_key_gets_none() -> None:
    assert gik_ops.verify_key_files(["vllm", "llamacpp"], CAT, {**SECRETS, "vllm_api_key": " \n"},
                                    {"vllm": None, "llamacpp": None}) == {}


def test_the_copy_is_gone_when_the_run_ends(tmp_path: Path) -> None:
    code = (f"import sys; sys.path[:0] = [{str(ROOT)!r}, {str(ROOT / 'pyinfra')!r}]\n"
            "import gik_ops\nfrom healthchecks import stack\n"
            "out = gik_ops.verify_key_files(['vllm'], stack.load(), {'vllm_api_key': 'sk-k'}, {'vllm': None})\n"
            "print(out['vllm'])\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    path = Path(r.stdout.strip().splitlines()[-1])
    assert path.name.startswith("gik-vllm-key-") and not path.exists()
