"""The command that evaluates an Erlang expression in a fresh VM of one version of the release,
with the stage's env, while the running node is left alone (`update --migrate` runs the
migrations there, before the restart). Every value is quoted here."""

from __future__ import annotations

from collections.abc import Mapping

from . import env_prefix, fresh_eval, q


def fresh_vm_eval(root: str, app: str, builder: str, env: Mapping[str, str], vsn: str,
                  erlang_expr: str) -> str:
    """mix: `bin/<app> eval` of release `vsn` (commands.fresh_eval: its config providers run
    as at boot). relx: its `eval` asks the running node, so the release's own erl is booted
    from releases/<vsn>/start_clean instead — every application of `vsn` on the code path, only
    kernel and stdlib started, no distribution — with that version's sys.config when it has
    one, on the erts that start_erl.data names (what boots next). The expression's string is
    printed; `-s erlang halt` ends the VM even when the expression could not run."""
    if builder == "mix":
        return fresh_eval(root, app, env, vsn, erlang_expr)
    rel = f"releases/{vsn}"
    run = f"io:put_chars({erlang_expr.rstrip().rstrip('.')}), io:nl()."
    return (f"cd {q(root)} && {env_prefix(env)}read -r pdt_erts pdt_boots < releases/start_erl.data"
            f" && if [ -f {q(rel + '/sys.config')} ]; then set -- -config {q(rel + '/sys')}; "
            'else set --; fi && "erts-$pdt_erts/bin/erl" "$@" -noshell -noinput '
            f"-boot {q(rel + '/start_clean')} -eval {q(run)} -s erlang halt")
