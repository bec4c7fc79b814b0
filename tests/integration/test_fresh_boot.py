"""A hot upgrade ends as "hot and equal to a fresh boot" or as "not hot, with the true reason"
(then a verified restart, one host at a time) — never as "ok" and different. On a project made
by `mix new --sup` at test time (tests/integration/shop.py), 2 hosts, real builds: after each
upgrade every host's application env, supervision tree and page are compared with the same
version booted fresh (a restart)."""

from __future__ import annotations

import json
import re
import threading
import time
import urllib.error
from collections.abc import Callable

import pytest

from pydeliver_tasks import sandbox as sb
from pydeliver_tasks.sandbox.config import write_runtime_config

from . import shop
from .conftest import Project, accepted_logins, http_get

HTTP_PORT = 4070
# smoke checks run after every start, restart and upgrade: the page, and Keeper answering
SMOKE = [{"url": "http://{host}:{env[HTTP_PORT]}/", "contains": "keeper=v1"},
         {"eval": "is_binary(MyShop.Keeper.show(\"x\"))"}]


@pytest.fixture(scope="module")
def project(box: sb.Sandbox, tmp_path_factory) -> Project:
    base = tmp_path_factory.mktemp("shop")
    d = shop.make_shop(base)
    cfg = base / "my_shop-sandbox.json"
    data = json.loads(write_runtime_config(box, shop.APP, HTTP_PORT).read_text())
    data["deliver"]["health"] = {"checks": SMOKE}  # besides the stage's /health
    cfg.write_text(json.dumps(data))
    p = Project(shop.APP, d, cfg, box)
    p.inv("build.release", "--tag", "0.1.0").ok()
    p.inv("deploy.release", "--version", "0.1.0").ok()
    p.inv("start").ok()
    yield p
    p.inv("stop")


def state(project: Project) -> tuple[dict[str, str], dict[str, str]]:
    """(snapshot per host, page per host)."""
    snaps = shop.snapshots(project.inv("eval", shop.SNAPSHOT).ok().out)
    assert len(snaps) == len(project.box.hosts), snaps
    pages = {}
    for h in project.box.hosts:
        status, body = http_get(project.url(h))
        assert status == 200, body
        pages[h.name] = body
    return snaps, pages


def upgrade_and_compare(project: Project, frm: str, to: str,
                        during: threading.Event | None = None, rebuild: bool = False,
                        hot: Callable[[], None] | None = None) -> str:
    """Upgrade, read every host back, restart (a fresh boot of `to`), read again: equal.
    `during` is set when the upgrade has ended; `hot` checks more before the restart."""
    try:
        res = project.inv("upgrade", "--from", frm, "--to", to, *(["--rebuild"] * rebuild),
                          timeout=600)
    finally:
        if during is not None:
            during.set()
    assert res.rc == 0, res.out
    if hot is not None:
        hot()
    hot_snaps, hot_pages = state(project)
    project.inv("restart").ok()
    fresh_snaps, fresh_pages = state(project)
    assert hot_pages == fresh_pages, (res.out, hot_pages, fresh_pages)
    for name, snap in hot_snaps.items():
        assert snap == fresh_snaps[name], f"{name}: {difference(snap, fresh_snaps[name])}\n{res.out}"
    return res.out


def difference(hot: str, fresh: str) -> str:
    """Where two snapshots part, with some context (for the failure message)."""
    at = next((i for i, (a, b) in enumerate(zip(hot, fresh, strict=False)) if a != b),
              min(len(hot), len(fresh)))
    return f"hot ...{hot[max(0, at - 300):at + 200]}... fresh ...{fresh[max(0, at - 300):at + 200]}..."


def test_text_change_is_hot_and_keeps_the_runtime_config(project: Project) -> None:
    out = upgrade_and_compare(project, "0.1.0", "0.1.1")
    assert out.count("hot-upgraded 0.1.0 -> 0.1.1") == 2, out
    assert "env equals a fresh boot" in out, out
    for h in project.box.hosts:
        body = http_get(project.url(h))[1]
        assert "<h1>Shop two</h1>" in body and "motd=motd-one" in body, body


def test_changed_runtime_config_is_applied_hot(project: Project) -> None:
    def told() -> None:  # config_change/3 was called with the changed key, on every host
        out = project.inv("eval", ":persistent_term.get(:my_shop_config_change, nil)").ok().out
        assert len(re.findall(r'^\[\S+\] \[motd: "motd-two"\]$', out, re.M)) == 2, out

    out = upgrade_and_compare(project, "0.1.1", "0.1.2", hot=told)
    assert out.count("hot-upgraded 0.1.1 -> 0.1.2") == 2, out
    for h in project.box.hosts:
        assert "motd=motd-two" in http_get(project.url(h))[1]


def test_child_added_in_application_start_falls_back_one_host_at_a_time(project: Project) -> None:
    answered: list[bool] = []  # per tick: did at least one host answer?
    stop = threading.Event()

    def loop() -> None:
        deadline = time.monotonic() + 300
        while not stop.is_set() and time.monotonic() < deadline:
            up = False
            for h in project.box.hosts:
                try:
                    up = http_get(project.url(h, "/health"), timeout=1)[0] == 200 or up
                except (OSError, urllib.error.URLError):
                    pass
            answered.append(up)
            time.sleep(0.05)

    watcher = threading.Thread(target=loop)
    watcher.start()
    try:
        out = upgrade_and_compare(project, "0.1.2", "0.1.3", during=stop)
    finally:
        stop.set()
        watcher.join()
    assert "Elixir.MyShop.Application.start/2 of my_shop changes" in out, out
    assert "hot-upgraded" not in out, out
    assert out.count("verified restart into 0.1.3") == 2, out
    assert len(answered) > 20 and all(answered), answered.count(False)
    for h in project.box.hosts:
        assert "stats=stats-ready" in http_get(project.url(h))[1]


def test_fun_kept_by_a_process_is_found_before_anything_changes(project: Project) -> None:
    out = upgrade_and_compare(project, "0.1.3", "0.1.4")
    assert re.search(r"Elixir\.MyShop\.Keeper \(<[\d.]+>, application my_shop\) holds "
                     r"'Elixir\.MyShop\.Formatter' in its state", out), out
    assert "hot-upgraded" not in out and out.count("verified restart into 0.1.4") == 2, out
    for h in project.box.hosts:
        assert "keeper=v1|x" in http_get(project.url(h))[1]


def test_child_removed_from_application_start_is_not_hot(project: Project) -> None:
    out = upgrade_and_compare(project, "0.1.4", "0.1.5")
    assert "start/2 of my_shop changes" in out and "hot-upgraded" not in out, out
    for h in project.box.hosts:
        assert "stats=" not in http_get(project.url(h))[1]


def test_a_bad_user_appup_is_refused_with_file_and_line(project: Project) -> None:
    folder = project.dir / "rel" / "appups" / "0.1.0-0.1.1"
    folder.mkdir(parents=True)
    appup = folder / "my_shop.appup"
    names = [h.name for h in project.box.hosts]
    try:
        appup.write_text('{"0.1.1",\n [{"0.1.0", [{load_module, \'Elixir.MyShop.Page\'}\n]}.\n')
        before = {n: accepted_logins(project.box, n) for n in names}
        res = project.inv("upgrade", "--from", "0.1.0", "--to", "0.1.1")
        assert res.rc == 2 and f"{appup}:3: expected ',' or ']'" in res.out, res.out
        assert {n: accepted_logins(project.box, n) for n in names} == before, "a host was touched"
        appup.write_text('{"0.1.1",\n [{"0.1.0", [{load_module, \'Elixir.MyShop.Page\'},\n'
                         "   {update, 'Elixir.MyShop.Cart', {advanced, []}}]}],\n"
                         " [{\"0.1.0\", []}]}.\n")
        res = project.inv("build.upgrade", "--from", "0.1.0", "--to", "0.1.1")
        assert res.rc == 2, res.out
        assert f"{appup}:3: {{update, Elixir.MyShop.Cart}} names a module that is in neither " \
               "release" in res.out, res.out
    finally:
        appup.unlink()


ERROR_APPUP = """{"0.1.6",
 [{"0.1.5", [{load_module, 'Elixir.MyShop.Page'},
             {apply, {logger, error, ["pdt deliberate error report"]}}]}],
 [{"0.1.5", [{load_module, 'Elixir.MyShop.Page'}]}]}.
"""


def test_error_reports_during_the_install_fail_the_hot_upgrade(project: Project) -> None:
    """An upgrade whose install logs an error report is not "ok": it goes back (here hot, with
    --on-failure downgrade); without that report the same upgrade is hot and equal."""
    pids_before = re.findall(r"pid (\d+)", project.inv("ping").ok().out)
    folder = project.dir / "rel" / "appups" / "0.1.5-0.1.6"
    folder.mkdir(parents=True)
    (folder / "my_shop.appup").write_text(ERROR_APPUP)
    try:
        res = project.inv("upgrade", "--from", "0.1.5", "--to", "0.1.6", "--on-failure",
                          "downgrade", timeout=600)
    finally:
        (folder / "my_shop.appup").unlink()
    assert res.rc == 1, res.out
    assert res.out.count("the node logged 1 error report(s) during the upgrade") >= 2, res.out
    assert "pdt deliberate error report" in res.out and "hot-downgraded 0.1.6 -> 0.1.5" in res.out
    for h in project.box.hosts:
        assert "<h1>Shop two</h1>" in http_get(project.url(h))[1]
    assert re.findall(r"pid (\d+)", project.inv("ping").ok().out) == pids_before
    out = upgrade_and_compare(project, "0.1.5", "0.1.6", rebuild=True)
    assert out.count("hot-upgraded 0.1.5 -> 0.1.6") == 2 and "no error reports" in out, out


def test_smoke_checks_gate_start_and_name_what_failed(project: Project) -> None:
    assert "health ok" in project.inv("start").ok().out
    failing = project.variant("failing-smoke", lambda d: d["health"]["checks"].append(
        {"eval": "MyShop.Keeper.show(\"x\") == \"nope\""}))
    res = project.inv("start", config=failing)
    assert res.rc == 1, res.out
    assert "eval 'MyShop.Keeper.show(\"x\") == \"nope\"': false, expected true" in res.out, res.out


def test_doctor_says_when_a_node_differs_from_a_fresh_boot(project: Project) -> None:
    spec = project.box.hosts[0].spec
    plain = project.variant("no-smoke", lambda d: d["health"].pop("checks"))
    project.inv("eval", "--host", spec, 'Application.put_env(:my_shop, :motd, "by hand")').ok()
    project.inv("eval", "--host", spec,
                "Supervisor.terminate_child(MyShop.Supervisor, MyShop.Keeper)").ok()
    res = project.inv("doctor", config=plain)
    assert res.rc == 1, res.out
    assert ("differs from a fresh boot of 0.1.6: application env differs from the release's "
            "config: my_shop.motd") in res.out, res.out
    assert ("supervision tree is missing children the release declares: "
            "my_shop/'Elixir.MyShop.Keeper'") in res.out, res.out
    assert res.out.count("differs from a fresh boot") >= 1 and "1 of 2" in res.out, res.out
    project.inv("restart", "--host", spec).ok()
    assert project.inv("doctor", config=plain).ok().out.count("healthy") >= 2
