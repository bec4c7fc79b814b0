"""The `deliver` config that points a project at a sandbox (stage `sandbox`), written as an
Invoke runtime config file."""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

from . import Sandbox
from .balancer import deliver_balancer


def deliver_config(box: Sandbox, app: str, http_port: int = 4000) -> dict[str, Any]:
    """The `deliver` subtree for stage `sandbox`: every host its own user, address, epmd port.

    Each host's node keeps the same name and HTTP port, as on real machines; what keeps them
    apart is the host's own loopback address and its own epmd (ERL_EPMD_PORT).
    """
    cookie_file = box.dir / "cookie"
    if not cookie_file.exists():
        cookie_file.write_text(secrets.token_hex(16))
        cookie_file.chmod(0o600)
    cookie = cookie_file.read_text().strip()
    hosts = []
    for i, h in enumerate(box.hosts):
        node = f"{app}@{h.address}"
        hosts.append({
            "host": h.spec,
            "deploy_path": f"{h.home}/apps/{app}",
            "env": {"HTTP_IP": h.address, "HTTP_PORT": str(http_port),
                    "ERL_EPMD_PORT": str(box.build.port + 2000 + i + 1),
                    "RELEASE_NODE": node, "NODE_NAME": node},
        })
    stage: dict[str, Any] = {
        "env": {"PYDELIVER_SANDBOX": box.tag, "RELEASE_DISTRIBUTION": "name",
                "RELEASE_COOKIE": cookie, "COOKIE": cookie, "LANG": "C.UTF-8"},
        "health": {"url": "http://{host}:{env[HTTP_PORT]}/health", "contains": "ok"},
        "hosts": hosts,
    }
    if box.balancer is not None:
        stage["balancer"] = deliver_balancer(box)
    return {
        "stage": "sandbox",
        "build": {"host": box.build.spec, "path": f"{box.build.home}/build/{app}"},
        "ssh": {"known_hosts": str(box.known_hosts), "identity_file": str(box.identity_file),
                "host_key_policy": "strict"},
        "stages": {"sandbox": stage},
    }


def write_runtime_config(box: Sandbox, app: str, http_port: int = 4000) -> Path:
    path = box.dir / "invoke.json"
    path.write_text(json.dumps({"deliver": deliver_config(box, app, http_port)}, indent=2))
    path.chmod(0o600)  # holds the sandbox cookie
    return path
