"""Where the endpoints are: ``ENGINE=URL`` arguments (:mod:`.url`), a compose project (:mod:`.compose`), an
Ansible inventory (:mod:`.inventory`). Each yields :class:`~.url.Endpoint`.

No network I/O here. Every problem raises :class:`ConfigError` with a one-line message naming the bad value.
"""

from __future__ import annotations
