"""What the CLI says of itself: every task's --list line is one whole sentence."""

from __future__ import annotations

from invoke import Collection, Task

from pydeliver_tasks import ns


def tasks(c: Collection, prefix: str = "") -> list[tuple[str, Task]]:
    found = [(prefix + name, t) for name, t in c.tasks.items()]
    for name, sub in c.collections.items():
        found += tasks(sub, f"{prefix}{name}.")
    return found


def test_every_list_line_is_a_whole_sentence() -> None:
    cut = []
    for name, t in tasks(ns):
        doc = (t.body.__doc__ or "").strip()
        first = doc.splitlines()[0] if doc else ""
        if not first.endswith((".", ":")) or len(first) > 100:
            cut.append(f"{name}: {first!r}")
    assert not cut, "inv --list shows the docstring's first line; these are cut:\n" + "\n".join(cut)


def test_inv_list_into_a_closed_pipe_ends_without_a_traceback(tmp_path) -> None:
    import subprocess
    import sys
    from pathlib import Path

    inv = Path(sys.executable).with_name("inv")

    def listed_into_closed_pipe(tasks_py: str, where: Path) -> bytes:
        where.mkdir()
        (where / "tasks.py").write_text(tasks_py)
        proc = subprocess.Popen([str(inv), "--list"], cwd=where, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        assert proc.stdout is not None
        proc.stdout.close()  # the reader is gone before inv prints (like `| head -0`)
        return proc.communicate(timeout=60)[1]

    # control: the same closed pipe does give Invoke's traceback without our collection
    plain = "from invoke import task\n\n\n@task\ndef hello(c):\n    pass\n"
    assert b"BrokenPipeError" in listed_into_closed_pipe(plain, tmp_path / "plain")
    ours = listed_into_closed_pipe("from pydeliver_tasks import ns  # noqa: F401\n", tmp_path / "ours")
    assert b"Traceback" not in ours and b"BrokenPipe" not in ours, ours
