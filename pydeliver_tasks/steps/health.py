"""Health: the HTTP check and the smoke checks (`deliver.health`) that gate start, restart,
upgrade and doctor. HTTP checks run from this machine, eval checks on the node."""

from __future__ import annotations

import urllib.error
import urllib.request

from ..commands import ops as ops_commands
from ..fleet import HostContext
from .frame import builder_of


def health(hc: HostContext) -> tuple[bool, str]:
    """The configured HTTP check and every smoke check; (all passed, what was seen)."""
    check = hc.host.health
    seen = []
    for url, status, contains in _gets(hc):
        ok, what = _get(url, status, contains, check.timeout)
        if not ok:
            return False, what
        seen.append(what)
    for c in check.checks:
        if c.eval:
            ok, what = _eval_check(hc, c.eval)
            if not ok:
                return False, what
            seen.append(what)
    return True, "; ".join(seen)


def gets_pass(hc: HostContext, timeout: float) -> bool | None:
    """The health check's HTTP GETs alone, each given at most `timeout` s (and never more than
    its own); None: it has none. They run on this machine and cost the host one HTTP request,
    so a start can ask them often while the node boots."""
    gets = _gets(hc)
    if not gets:
        return None
    wait = max(0.05, min(timeout, hc.host.health.timeout))
    return all(_get(url, status, contains, wait)[0] for url, status, contains in gets)


def _gets(hc: HostContext) -> list[tuple[str, int, str]]:
    check = hc.host.health
    return [(hc.host.health_url(url), status, contains) for url, status, contains in
            ([(check.url, check.status, check.contains)] if check.url else [])
            + [(c.url, c.status, c.contains) for c in check.checks if c.url]]


def _get(url: str, want: int, contains: str, timeout: float) -> tuple[bool, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310
            status, body = resp.status, resp.read(65536).decode(errors="replace")
    except urllib.error.HTTPError as exc:
        status, body = exc.code, ""
    except (OSError, ValueError) as exc:
        return False, f"GET {url}: {exc}"
    if status != want:
        return False, f"GET {url}: status {status}, expected {want}"
    if contains and contains not in body:
        return False, f"GET {url}: body lacks {contains!r}"
    return True, f"GET {url}: {status}"


def _eval_check(hc: HostContext, expr: str) -> tuple[bool, str]:
    """A smoke check evaluated on the node: its printed value must be `true`."""
    h = hc.host
    res = hc.run(ops_commands.eval_expr(h.deploy_path, hc.settings.release, builder_of(hc.settings),
                                        h.env, expr), changes=False)
    lines = (res.stdout.strip() or res.stderr.strip() or "no output").splitlines()
    if res.ok and lines[-1].strip() == "true":
        return True, f"eval {expr!r}: true"
    return False, f"eval {expr!r}: {lines[-1][:200]}, expected true"
