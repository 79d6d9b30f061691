"""Where the endpoints are: ``ENGINE=URL`` arguments (:mod:`.url`), a compose project (:mod:`.compose`), an
Ansible inventory (:mod:`.inventory`). Each yields :class:`~.url.Endpoint`.

No network I/O here. Every problem raises :class:`ConfigError` with a one-line message naming the bad value.
"""

from __future__ import annotations

# Re-exports still imported by their old path: compose-preflight (healthchecks/preflight.py: compose_files,
# load_compose, project_name, read_dotenv) and tests/unit/test_catalogue.py (from_compose, read_dotenv,
# parse_endpoint). New code imports from the modules themselves; these go when those two files do the same.
from .compose import compose_files, from_compose, load_compose, project_name, read_dotenv
from .url import parse_endpoint

__all__ = ["compose_files", "from_compose", "load_compose", "parse_endpoint", "project_name", "read_dotenv"]
