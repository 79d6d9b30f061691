"""Where the endpoints are: ``ENGINE=URL`` arguments (:mod:`.url`), a compose project (:mod:`.compose`), an
Ansible inventory (:mod:`.inventory`). Each yields :class:`~.url.Endpoint`.

No network I/O here. Every problem raises :class:`ConfigError` with a one-line message naming the bad value.
"""

from __future__ import annotations

from ..errors import ConfigError
from .compose import (
           LABEL,
           compose_files,
           from_compose,
           interpolate,
           load_compose,
           parse_dotenv,
           project_name,
           read_dotenv,
)
from .inventory import InventoryHost, ansible_bool, from_inventory, read_inventory
from .url import Endpoint, default_endpoints, normalise_url, parse_endpoint, with_defaults

__all__ = ["LABEL", "ConfigError", "Endpoint", "InventoryHost", "ansible_bool", "compose_files", "default_endpoints",
           "from_compose", "from_inventory", "interpolate", "load_compose", "normalise_url", "parse_dotenv",
           "parse_endpoint", "project_name", "read_dotenv", "read_inventory", "with_defaults"]
