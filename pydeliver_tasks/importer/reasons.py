"""Why each edeliver setting that has no key here is not carried over: one sentence each, so the
report tells an edeliver user what replaces the setting instead of just dropping it."""

from __future__ import annotations

import re

_CLEAN = "every build starts from a clean checkout"
_TOOLS = "the build runs mix or rebar3 from the build user's PATH"
_LINKS = "per-host vm.args/sys.config links are not made: give per-host values as env (deliver.env, " \
         "a stage's or a host's env) and read them in the release's runtime config"
_RELUP = "relups are made by inv build.upgrade from appups; your own appups go in " \
         "deliver.upgrade.appups_dir"
_REF = "give --tag, --branch or --revision to inv build.release (it builds HEAD otherwise)"
_OUTPUT = "our tasks print every line as it comes"
_S3 = "never written to our config: boto3 reads AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY from " \
      "the environment where inv runs; the bucket goes in deliver.store (s3://bucket/prefix)"
_HOSTS = "set the build host (BUILD_HOST) and each stage's hosts (<STAGE>_HOSTS) separately"
_DOCKER = "docker builds and docker image release stores are not supported"

NOT_MAPPED: dict[str, str] = {
    "GIT_CLEAN_PATHS": _CLEAN,
    "SKIP_GIT_CLEAN": f"{_CLEAN}; dependencies are reused by the warm build (inv build.release "
                      "--clean builds them too)",
    "SKIP_MIX_CLEAN": f"{_CLEAN}; the project itself is always compiled afresh",
    "RELEASE_DIR": "the release is taken from _build/<mix_env>/rel/<app> (rebar3: "
                   "_build/<profile>/rel/<app>)",
    "MIX_CMD": _TOOLS, "REBAR_CMD": _TOOLS, "REBAR3_CMD": _TOOLS, "RELX_CMD": _TOOLS,
    "REBAR_CONFIG": "rebar3 reads the project's own rebar.config",
    "LINK_VM_ARGS": _LINKS, "LINK_SYS_CONFIG": _LINKS,
    "ECTO_REPOSITORY": "inv migrate runs deliver.migrations.run (default <App>.Release.migrate()), "
                       "which migrates the repositories your release module names",
    "CLEAN_DEPLOY": "each version is extracted beside the others; old ones are removed by "
                    "deliver.keep_releases and inv cleanup",
    "START_DEPLOY": "inv update builds, deploys and restarts (verified); after inv deploy.release, "
                    "run inv restart",
    "FORCE": "our tasks never ask questions",
    "MIX_ENV": "edeliver builds with TARGET_MIX_ENV (imported as deliver.mix_env)",
    "SKIP_RELUP_MODIFICATIONS": _RELUP, "RELUP_MODIFICATION_MODULE": _RELUP,
    "PROFILE": "commands on the hosts do not source a profile file: the build host needs its tools "
               "on the PATH of a non-interactive shell; deploy hosts get deliver.env",
    "APP_USER": "edeliver's internal default user: each stage's hosts get <STAGE>_USER",
    "BRANCH": _REF, "REFSPEC": _REF, "REVISION": _REF,
    "GIT_PUSH": "the build always force-pushes the commit it builds",
    "LOG_FILE": _OUTPUT, "MODE": _OUTPUT, "VERBOSE": _OUTPUT,
    "TEST_LOCALLY_AT": "deploying to this machine is not a stage here: try things on the sandbox "
                       "(inv sandbox.up)",
    "LOCAL_RELEASE_STORE": "the local store is deliver.store (RELEASE_STORE is imported there)",
    "HOST": _HOSTS, "HOSTS": _HOSTS, "SERVER": _HOSTS, "SERVERS": _HOSTS,
    "AWS_ACCESS_KEY_ID": _S3, "AWS_SECRET_ACCESS_KEY": _S3, "AWS_BUCKET_NAME": _S3,
    "STRATEGY": "edeliver's internal choice of script",
    "SSH_OPTIONS": "use your ssh_config (deliver.ssh.config_file) for ssh options",
}
_LEGACY = {"SUPERVISOR", "PORT", "FOREMAN_EXTRAS", "OWNER", "GROUP", "PERMISSIONS"}


def why_not(name: str) -> str | None:
    """Why an edeliver setting has no equivalent key, or None when edeliver does not know it."""
    if name in NOT_MAPPED:
        return NOT_MAPPED[name]
    if name in _LEGACY:
        return "edeliver's Erlang/Elixir commands do not use it (it is from deliver's Ruby strategies)"
    if name.startswith("DOCKER_") or name == "CONTAINER_START_SCRIPT":
        return _DOCKER
    m = re.fullmatch(r"([A-Z][A-Z0-9_]*)_NODES", name)
    if m:
        return f"node commands use the stage's hosts ({m.group(1)}_HOSTS)"
    m = re.fullmatch(r"([A-Z][A-Z0-9_]*)_USER", name)
    if m:
        return f"there is no {m.group(1)}_HOSTS for it to go with"
    return None
