"""The gateway's TLS pair checked on the controller before any change: compose-preflight's own check
(healthchecks/preflight.py ``_check_gateway_tls``: not empty, a PEM certificate chain and its unencrypted private key
that belong together, loaded as the server loads them), run on what the role would copy.

    gik_gateway_tls_errors(cert_text, key_text) -> [message]   empty: the pair loads
        The texts are the controller's files as the role copies them (``lookup('ansible.builtin.file', ...)``, so an
        Ansible Vault-encrypted file is checked decrypted); they go to a private temporary folder for the check and
        the messages name gateway_tls_cert_src / gateway_tls_key_src, never a file's content or the folder.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import Any

_KIT = Path(__file__).resolve().parents[3]
if str(_KIT) not in sys.path:
    sys.path.insert(0, str(_KIT))

from healthchecks import preflight, stack  # noqa: E402


def gik_gateway_tls_errors(cert_text: Any, key_text: Any) -> list[str]:
    cat = stack.load()
    cert_env = cat.settings["gateway_tls_cert_file"].env or ""
    key_env = cat.settings["gateway_tls_key_file"].env or ""
    with tempfile.TemporaryDirectory(prefix="gik-tls-") as tmp:  # mode 0700
        paths = {"gateway_tls_cert_src": Path(tmp, "cert.pem"), "gateway_tls_key_src": Path(tmp, "key.pem")}
        for path, text in zip(paths.values(), (cert_text, key_text), strict=True):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write("" if text is None else str(text))
        env = {cert_env: str(paths["gateway_tls_cert_src"]), key_env: str(paths["gateway_tls_key_src"])}
        errors = preflight._check_gateway_tls(Path(tmp), env)  # the one TLS check, reused as it is
    out = []
    for e in errors:
        for name, path in paths.items():
            e = e.replace(f" ({path})", "").replace(str(path), name)
        out.append(e.replace(cert_env, "gateway_tls_cert_src").replace(key_env, "gateway_tls_key_src"))
    return out


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"gik_gateway_tls_errors": gik_gateway_tls_errors}
