"""The install script of a real release, run undisturbed once, then with a fault at each of its
external commands (fail, SIGKILL, or the disk filled up just before): each run must leave the
root equal, file for file, to the root before or after the undisturbed install — never a mix.
Shared by the example apps (test_crash) and the projects made at test time."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from pydeliver_tasks.commands import activation as acmd

from .faults import Injector, diff, tmpfs, tree


def boots(root: Path) -> str:
    return (root / "releases" / "start_erl.data").read_text().split()[1]


@dataclass
class Install:
    """An install of `new` over `old` on a root in `base`, run undisturbed once: the trees
    before and after, the call that is the commit point, and a way back to before."""
    inj: Injector
    root: Path
    snap: Path
    script: str
    version: str
    old: dict[str, str]
    new: dict[str, str]
    calls: int
    commit_at: int

    def reset(self) -> None:
        shutil.rmtree(self.root)
        # hard links: the scripts only add, rename and remove files, never write into one
        subprocess.run(["cp", "-al", str(self.snap), str(self.root)], check=True)


def undisturbed(app: str, tarballs: dict[str, Path], work: Path, base: Path) -> Install:
    """`tarballs`: {old version: path, new version: path}, in that order."""
    inj = Injector(work)
    root, snap = base / "root", base / "before"
    (root / ".deliver" / "releases").mkdir(parents=True)
    scripts = {}
    for vsn, path in tarballs.items():
        shutil.copy(path, root / ".deliver" / "releases")
        sha = hashlib.sha256(path.read_bytes()).hexdigest()
        scripts[vsn] = acmd.install_release(str(root), app, vsn, sha, uploaded=False)
    old_vsn, new_vsn = tarballs
    assert inj.run(scripts[old_vsn])[0] == 0
    subprocess.run(["cp", "-a", str(root), str(snap)], check=True)
    old = tree(root)
    rc, calls, _, err = inj.run(scripts[new_vsn])
    assert rc == 0 and boots(root) == new_vsn, err
    assert calls > 30, calls
    commit_at = next(i for i, call in enumerate(inj.calls, 1)
                     if call.startswith("mv .deliver/journal.prepare .deliver/journal.commit"))
    return Install(inj, root, snap, scripts[new_vsn], new_vsn, old, tree(root), calls, commit_at)


def followed_by(ins: Install, script: str, version: str) -> Install:
    """The root as `ins` leaves it (its new tree), then `script` (another activation, making
    `version` boot next) run undisturbed once: the Install to inject faults into next."""
    ins.reset()
    assert ins.inj.run(ins.script)[0] == 0
    snap = Path(tempfile.mkdtemp(prefix="then-", dir=ins.snap.parent)) / "root"
    subprocess.run(["cp", "-a", str(ins.root), str(snap)], check=True)
    old = tree(ins.root)
    rc, calls, _, err = ins.inj.run(script)
    assert rc == 0 and calls > 5, err
    commit_at = next(i for i, call in enumerate(ins.inj.calls, 1)
                     if call.startswith("mv .deliver/journal.prepare .deliver/journal.commit"))
    return Install(ins.inj, ins.root, snap, script, version, old, tree(ins.root), calls, commit_at)


def fault_at_each_call(ins: Install, steps: dict[str, int]) -> dict[str, int]:
    """Every `step`-th call fails (mode "fail") or kills the script ("kill"), then `recover`:
    before the commit point the old tree (a failure: already by the script's own rollback),
    after it the new one. -> how many runs ended old / new."""
    outcomes = {"old": 0, "new": 0}
    for mode, step in steps.items():
        for at in range(1, ins.calls + 1, step):
            ins.reset()
            rc, _, hit, err = ins.inj.run(ins.script, at, mode)
            right_away = tree(ins.root) if mode == "fail" or rc == 0 else {}
            rec = ins.inj.plain(acmd.recover(str(ins.root)))
            assert rec.returncode == 0, rec.stderr
            final = tree(ins.root)
            where = f"{mode} at call {at} ({hit}): exit {rc}; {err[-300:]}"
            assert final in (ins.old, ins.new), \
                f"{where}: mixed: {diff(final, ins.old)} / {diff(final, ins.new)}"
            if rc == 0:  # a call whose failure the script tolerates (`|| true`, a fallback)
                assert final == ins.new and right_away == ins.new, where
            elif at <= ins.commit_at:
                assert final == ins.old, where
                if mode == "fail":
                    assert right_away == ins.old, \
                        f"{where}: the script's rollback left {diff(right_away, ins.old)}"
            else:
                assert final == ins.new, where
                assert f"PDT{{recovered=finished={ins.version}}}" in rec.stdout, where
            outcomes["old" if final == ins.old else "new"] += 1
    return outcomes


def disk_full_at_each_call(app: str, tarballs: dict[str, Path], work: Path,
                           step: int) -> dict[str, int]:
    """The root on a tmpfs of its own, filled up (until ENOSPC) just before every `step`-th
    call: before the commit point the script stops and rolls back to exactly the old tree on
    the full disk; from the commit point on, the finish needs no new room and completes.
    -> how many runs ended old / new."""
    size = sum(p.stat().st_size for p in tarballs.values())
    with tmpfs(work / "disk", f"{size * 8 // 2**20 + 32}m", work) as disk:
        ins = undisturbed(app, tarballs, work, disk)
        filler = disk / "filler"
        outcomes = {"old": 0, "new": 0}
        for at in range(1, ins.calls + 1, step):
            ins.reset()
            rc, _, hit, err = ins.inj.run(ins.script, at, "fill", filler)
            right_away = tree(ins.root)
            where = f"disk full at call {at} ({hit}): exit {rc}; {err[-300:]}"
            assert filler.stat().st_size > 0, where
            if at > ins.commit_at:
                assert rc == 0 and right_away == ins.new, f"{where}: {diff(right_away, ins.new)}"
            elif rc != 0:
                assert "No space left on device" in err or "rolled back" in err, where
                assert right_away == ins.old, f"{where}: left {diff(right_away, ins.old)}"
            else:  # nothing was written after that call
                assert right_away == ins.new, where
            filler.unlink()
            rec = ins.inj.plain(acmd.recover(str(ins.root)))
            assert rec.returncode == 0 and tree(ins.root) == right_away, (where, rec.stdout)
            outcomes["old" if right_away == ins.old else "new"] += 1
    return outcomes


def staging_at_each_call(app: str, release: Path, upgrade: Path, versions: tuple[str, str],
                         work: Path, steps: dict[str, int]) -> int:
    """`stage_upgrade` puts a hot upgrade's files beside the running release and changes nothing
    that boots, so it keeps no journal. With a fault at every `step`-th call, then `recover`:
    every path of the root before (outside .deliver) is unchanged, no staging dir is left, and
    the same script run again completes to the undisturbed result. -> runs made."""
    old, new = versions
    inj = Injector(work)
    root, snap = work / "root", work / "before"
    (root / ".deliver" / "releases").mkdir(parents=True)
    for path in (release, upgrade):
        shutil.copy(path, root / ".deliver" / "releases")
    sha = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in (release, upgrade)}
    assert inj.run(acmd.install_release(str(root), app, old, sha[release], uploaded=False))[0] == 0
    subprocess.run(["cp", "-a", str(root), str(snap)], check=True)
    kept = {k: v for k, v in tree(root).items() if not k.startswith(".deliver")}
    script = acmd.stage_upgrade(str(root), app, old, new, sha[upgrade], False, [f"{app}-{new}"])
    rc, calls, _, err = inj.run(script)
    assert rc == 0 and calls > 10, err
    staged = tree(root)
    runs = 0
    for mode, step in steps.items():
        for at in range(1, calls + 1, step):
            shutil.rmtree(root)
            subprocess.run(["cp", "-al", str(snap), str(root)], check=True)
            rc, _, hit, err = inj.run(script, at, mode)
            where = f"{mode} at call {at} ({hit}): exit {rc}; {err[-300:]}"
            assert inj.plain(acmd.recover(str(root))).returncode == 0, where
            now = tree(root)
            changed = [k for k, v in kept.items() if now.get(k) != v]
            assert changed == [], f"{where}: changed what the running release uses: {changed[:8]}"
            assert not any(k.startswith(".deliver/staging/") for k in now), where
            again = inj.run(script)
            assert again[0] == 0 and tree(root) == staged, \
                f"{where}: the re-run left {diff(tree(root), staged)}"
            runs += 1
    return runs
