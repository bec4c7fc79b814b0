"""inv deliver.import's reader: edeliver's .deliver/config (fixtures in edeliver_configs/) mapped to
our `deliver` config, with a finding (and its line) for everything in the file."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from pydeliver_tasks import config as deliver_config
from pydeliver_tasks.importer import import_text, invoke_yaml, read, report_lines
from pydeliver_tasks.validation import InvalidInput

CONFIGS = Path(__file__).parent / "edeliver_configs"
FIXTURES = sorted(p.stem for p in CONFIGS.glob("*.config") if p.stem != "latin1")
BUILT_HERE = "edeliver built in it directly; ours keeps repo.git, src and out in it"
ONLY_STAGE = "the only stage: our tasks use it when no --stage is given (edeliver's default target was staging)"


def imported(name: str):
    return import_text(read(CONFIGS / f"{name}.config"))


def test_values_are_built_from_the_values_set_above_them() -> None:
    result = imported("earlier_refs")
    assert result.config == {
        "app": "inventory",
        "build": {"host": "ci@ci.example.org", "path": "/home/ci/builds/inventory"},
        "deploy_path": "/opt/inventory/inventory",
        "stages": {"production": {"hosts": ["inventory@inv1.example.org"]}},
    }
    assert report_lines(result) == [
        ".deliver/config:2 APP: mapped to deliver.app",
        ".deliver/config:3 BUILD_HOST: mapped to deliver.build.host",
        ".deliver/config:4 BUILD_USER: mapped to deliver.build.host (the user of the build host)",
        f".deliver/config:5 BUILD_AT: mapped to deliver.build.path ({BUILT_HERE})",
        ".deliver/config:6 PRODUCTION_HOSTS: mapped to deliver.stages.production.hosts (1 host)",
        f".deliver/config:6 PRODUCTION_HOSTS: {ONLY_STAGE}",
        ".deliver/config:7 PRODUCTION_USER: mapped to deliver.stages.production.hosts (the user of each host)",
        ".deliver/config:8 DELIVER_TO: mapped to deliver.deploy_path (edeliver deployed into DELIVER_TO/APP)",
    ]
    assert result.unmapped == []


def test_a_variable_set_only_further_down_is_unset_and_left_as_written() -> None:
    result = imported("unset_refs")
    assert result.config["build"] == {"host": "bob@build.example.net", "path": "/home/$BUILD_USER/build"}
    assert result.config["deploy_path"] == "$DEPLOY_ROOT/apps/ledger"
    check = "check it: parts are left as written (see the notes)"
    assert report_lines(result) == [
        ".deliver/config:1 APP: mapped to deliver.app",
        ".deliver/config:3 BUILD_AT: $BUILD_USER is not set before this line: left as is",
        f".deliver/config:3 BUILD_AT: mapped to deliver.build.path ({BUILT_HERE}; {check})",
        ".deliver/config:4 BUILD_HOST: mapped to deliver.build.host",
        ".deliver/config:5 BUILD_USER: mapped to deliver.build.host (the user of the build host)",
        ".deliver/config:6 DELIVER_TO: $DEPLOY_ROOT is not set before this line: left as is",
        f".deliver/config:6 DELIVER_TO: mapped to deliver.deploy_path (edeliver deployed into DELIVER_TO/APP; {check})",
        ".deliver/config:7 PRODUCTION_HOSTS: mapped to deliver.stages.production.hosts (1 host)",
        f".deliver/config:7 PRODUCTION_HOSTS: {ONLY_STAGE}",
        ".deliver/config:8 PRODUCTION_USER: mapped to deliver.stages.production.hosts (the user of each host)",
    ]


def test_the_later_assignment_wins_and_both_lines_say_so() -> None:
    result = imported("assigned_twice")
    assert result.config["build"]["host"] == "builder@new-build.example.com"
    assert result.config["stages"] == {"staging": {"hosts": ["web@s1.example.com", "web@s2.example.com"]}}
    assert result.config["stage"] == "staging"
    assert report_lines(result) == [
        ".deliver/config:1 APP: mapped to deliver.app",
        ".deliver/config:2 BUILD_HOST: not mapped: assigned again at line 5; that later value is used",
        ".deliver/config:3 BUILD_USER: mapped to deliver.build.host (the user of the build host)",
        f".deliver/config:4 BUILD_AT: mapped to deliver.build.path ({BUILT_HERE})",
        ".deliver/config:5 BUILD_HOST: assigned again (first at line 2): the later value wins, as in bash",
        ".deliver/config:5 BUILD_HOST: mapped to deliver.build.host",
        ".deliver/config:6 STAGING_HOSTS: added to at line 8 (+=): the value used is the sum",
        ".deliver/config:7 STAGING_USER: mapped to deliver.stages.staging.hosts (the user of each host)",
        ".deliver/config:8 STAGING_HOSTS: mapped to deliver.stages.staging.hosts (2 hosts)",
        ".deliver/config:8 STAGING_HOSTS: mapped to deliver.stage (edeliver's default target)",
        ".deliver/config:9 DELIVER_TO: mapped to deliver.deploy_path (edeliver deployed into DELIVER_TO/APP)",
    ]
    assert [(f.line, f.name) for f in result.unmapped] == [(2, "BUILD_HOST")]


def test_npm_and_phx_digest_hooks_become_before_compile_commands() -> None:
    result = imported("phoenix_assets")
    # edeliver's order: post_erlang_get_and_update_deps (line 22), after the dependency fetch,
    # then pre_erlang_clean_compile
    assert result.config["hooks"] == {"after_deps": ["set -e\ncd assets\nnpm ci"], "before_compile": [
        "npm install --prefix assets $SILENCE",
        "npm run deploy --prefix assets $SILENCE",
        "APP='storefront' MIX_ENV='prod' mix phx.digest $SILENCE",
    ]}
    lines = report_lines(result)
    silence = ("$SILENCE is set by edeliver at run time (edeliver's output silencing); nothing sets "
               "it here: left as is")
    work_tree = "the hook runs in the project's work tree"
    assert lines[8] == (".deliver/config:10 pre_erlang_clean_compile: mapped to "
                        "deliver.hooks.before_compile (3 commands)")
    assert ".deliver/config:18 pre_erlang_clean_compile: $TARGET_MIX_ENV is not set in the file: " \
           "edeliver's default 'prod' is used" in lines
    assert ".deliver/config:18 pre_erlang_clean_compile: $MIX_CMD is not set in the file: edeliver's " \
           "default 'mix' is used" in lines
    assert [line for line in lines if "pre_erlang_clean_compile" in line and "dropped" in line] == [
        '.deliver/config:11 pre_erlang_clean_compile: dropped `status "Installing npm packages"`: '
        "edeliver's progress message",
        ".deliver/config:13 pre_erlang_clean_compile: dropped `[ -f ~/.profile ] && source ~/.profile`: edeliver's "
        "profile loading; if a command needs what it sets, prefix that command with `. ~/.profile && `",
        ".deliver/config:14 pre_erlang_clean_compile: dropped `set -e`: each command of a hook runs on its own "
        "and a failing one fails the step",
        f".deliver/config:15 pre_erlang_clean_compile: dropped `cd '.'`: {work_tree}",
    ]
    assert f".deliver/config:15 pre_erlang_clean_compile: $BUILD_AT became .: {work_tree}" in lines
    assert [line for line in lines if "$SILENCE" in line] == [
        f".deliver/config:{n} pre_erlang_clean_compile: {silence}" for n in (16, 17, 18)]
    assert [line for line in lines if "post_erlang_get_and_update_deps" in line] == [
        ".deliver/config:22 post_erlang_get_and_update_deps: mapped to deliver.hooks.after_deps (1 command)",
        '.deliver/config:23 post_erlang_get_and_update_deps: dropped `status "Building assets in assets/"`: '
        "edeliver's progress message",
        f".deliver/config:26 post_erlang_get_and_update_deps: $BUILD_AT became .: {work_tree}",
        f'.deliver/config:26 post_erlang_get_and_update_deps: dropped `cd "."`: {work_tree}',
        ".deliver/config:27 post_erlang_get_and_update_deps: kept as one command: `cd assets` changes the "
        "shell for the commands after it",
    ]
    assert result.unmapped == []


def test_staging_production_and_a_custom_group_become_stages() -> None:
    result = imported("host_groups")
    assert result.config["stages"] == {
        "staging": {"hosts": ["stage@stage.radar.io"], "deploy_path": "staging/radar"},
        "production": {"hosts": ["radar@eu1.radar.io", "radar@eu2.radar.io:2222", "admin@eu3.radar.io"]},
        "canary": {"hosts": ["radar@canary1.radar.io", "radar@canary2.radar.io"]},
    }
    assert result.config["deploy_path"] == "radar"  # DELIVER_TO="~": the home itself
    assert result.config["build"] == {"host": "build@build.radar.io", "path": "radar-builds"}
    home = "~/ dropped: a relative path starts in the user's home"
    assert report_lines(result) == [
        ".deliver/config:1 APP: mapped to deliver.app",
        ".deliver/config:2 BUILD_HOST: mapped to deliver.build.host",
        ".deliver/config:3 BUILD_USER: mapped to deliver.build.host (the user of the build host)",
        f".deliver/config:4 BUILD_AT: mapped to deliver.build.path ({home}; {BUILT_HERE})",
        ".deliver/config:6 STAGING_HOSTS: mapped to deliver.stages.staging.hosts (1 host)",
        ".deliver/config:6 STAGING_HOSTS: mapped to deliver.stage (edeliver's default target)",
        ".deliver/config:7 STAGING_USER: mapped to deliver.stages.staging.hosts (the user of each host)",
        ".deliver/config:8 TEST_AT: mapped to deliver.stages.staging.deploy_path (edeliver deployed staging "
        f"into TEST_AT/APP; {home})",
        ".deliver/config:10 PRODUCTION_HOSTS: mapped to deliver.stages.production.hosts (3 hosts)",
        ".deliver/config:10 PRODUCTION_HOSTS: eu2.radar.io:2222: the :port is the SSH port here (edeliver "
        "handed it to ssh as part of the name)",
        ".deliver/config:10 PRODUCTION_HOSTS: admin@eu3.radar.io has its own user: kept as written (edeliver "
        "put its _USER before it as well)",
        ".deliver/config:10 PRODUCTION_HOSTS: radar@eu1.radar.io is listed twice: kept once",
        ".deliver/config:16 PRODUCTION_USER: mapped to deliver.stages.production.hosts (the user of each host)",
        f".deliver/config:17 DELIVER_TO: mapped to deliver.deploy_path (edeliver deployed into DELIVER_TO/APP; {home})",
        ".deliver/config:19 CANARY_HOSTS: mapped to deliver.stages.canary.hosts (2 hosts; edeliver itself "
        "deploys only to staging and production)",
        ".deliver/config:19 CANARY_HOSTS: commas read as separators (edeliver wanted spaces between hosts)",
        ".deliver/config:20 CANARY_USER: mapped to deliver.stages.canary.hosts (the user of each host)",
        ".deliver/config:21 DEMO_USER: not mapped: there is no DEMO_HOSTS for it to go with",
    ]


def test_every_quoting_style_and_comments() -> None:
    result = imported("quoting")
    assert result.config == {
        "app": "quotes",
        "mix_env": "prod",
        "build": {"host": "builder@build.example.com", "path": "/srv/builds/$APP"},  # '$APP' is literal
        "store": "/var/lib/releases store/releases",
        "deploy_path": "/srv/quotes/quotes",
        "auto_version": "git-revision+branch-unless-master",
        "stages": {"production": {"hosts": ["deploy@a.example.com", "deploy@b.example.com"]}},
    }
    assert [(f.line, f.name, f.what) for f in result.unmapped] == [
        (10, "TEST_AT", "not mapped: there is no staging stage for it"),
        (16, "GREETING", "not mapped: not an edeliver setting"),
        (16, "MOTTO", "not mapped: not an edeliver setting"),
    ]
    assert all(f.status != "note" for f in result.report if f.line != 8)


def test_export_readonly_and_plain_assignments_are_all_read() -> None:
    result = imported("exported")
    assert result.config == {
        "app": "beacon",
        "builder": "mix",
        "mix_env": "staging",
        "build": {"host": "builder@build.beacon.dev", "path": "/tmp/beacon"},
    }
    assert report_lines(result) == [
        ".deliver/config:1 APP: mapped to deliver.app",
        ".deliver/config:2 BUILD_HOST: mapped to deliver.build.host",
        ".deliver/config:2 BUILD_USER: mapped to deliver.build.host (the user of the build host)",
        f".deliver/config:4 BUILD_AT: mapped to deliver.build.path ({BUILT_HERE})",
        ".deliver/config:5 RELEASE_CMD: mapped to deliver.builder",
        ".deliver/config:6 TARGET_MIX_ENV: mapped to deliver.mix_env",
        ".deliver/config:7 MIX_ENV: not mapped: edeliver builds with TARGET_MIX_ENV (imported as deliver.mix_env)",
    ]


def test_default_expansions_are_resolved_and_reported() -> None:
    result = imported("defaults")
    assert result.config == {
        "app": "metrics",
        "stage": "staging",
        "build": {"host": "metrics@build.metrics.test", "path": "/home/metrics/build"},
        "store": "${STORE_DIR%/}/releases/releases",
        "deploy_path": "/opt/metrics",
        "ssh": {"connect_timeout": 20},
        "stages": {"staging": {"hosts": ["st1.metrics.test"]}},
    }
    assert report_lines(result) == [
        ".deliver/config:1 APP: ${APP:-metrics}: APP is not set, so the default 'metrics' is used",
        ".deliver/config:1 APP: mapped to deliver.app",
        ".deliver/config:2 BUILD_HOST: ${BUILD_HOST:-build.metrics.test}: BUILD_HOST is not set, so the "
        "default 'build.metrics.test' is used",
        ".deliver/config:2 BUILD_HOST: mapped to deliver.build.host",
        ".deliver/config:3 BUILD_USER: ${BUILD_USER:=metrics}: BUILD_USER is not set, so it is set to 'metrics' here",
        ".deliver/config:3 BUILD_USER: mapped to deliver.build.host (the user of the build host)",
        f".deliver/config:4 BUILD_AT: mapped to deliver.build.path ({BUILT_HERE})",
        ".deliver/config:5 DELIVER_TO: ${DELIVER_TO-/opt}: DELIVER_TO is not set, so the default '/opt' is used",
        ".deliver/config:5 DELIVER_TO: mapped to deliver.deploy_path (edeliver deployed into DELIVER_TO/APP)",
        ".deliver/config:6 STAGING_HOSTS: ${STAGING_HOSTS:-st1.metrics.test}: STAGING_HOSTS is not set, so "
        "the default 'st1.metrics.test' is used",
        ".deliver/config:6 STAGING_HOSTS: mapped to deliver.stages.staging.hosts (1 host)",
        ".deliver/config:6 STAGING_HOSTS: no STAGING_USER: ssh logs in as the user your ssh_config or login gives",
        ".deliver/config:6 STAGING_HOSTS: mapped to deliver.stage (edeliver's default target)",
        ".deliver/config:7 STAGING_USER: ${STAGING_USER:+$STAGING_USER}: STAGING_USER is not set, so it is empty",
        ".deliver/config:7 STAGING_USER: not mapped: it is empty",
        ".deliver/config:8 SSH_TIMEOUT: ${SSH_TIMEOUT:-20}: SSH_TIMEOUT is not set, so the default '20' is used",
        ".deliver/config:8 SSH_TIMEOUT: mapped to deliver.ssh.connect_timeout",
        ".deliver/config:9 RELEASE_STORE: ${STORE_DIR%/} is an expansion the importer does not work out: left as is",
        ".deliver/config:9 RELEASE_STORE: mapped to deliver.store (edeliver keeps the tarballs in releases/ "
        "inside it; check it: parts are left as written (see the notes))",
    ]


def test_values_from_commands_are_not_mapped() -> None:
    result = imported("command_substitution")
    assert result.config == {"build": {"host": "build.example.org"}}
    from_command = "not mapped: its value comes from a command the importer does not run"
    assert report_lines(result) == [
        ".deliver/config APP: no value imported: edeliver used the project directory's name; set deliver.app",
        '.deliver/config:1 APP: $(basename "$PWD") is a command substitution: not run, left as is',
        f".deliver/config:1 APP: {from_command}",
        ".deliver/config:2 BUILD_HOST: mapped to deliver.build.host",
        ".deliver/config:2 BUILD_HOST: no BUILD_USER: ssh logs in as the user your ssh_config or login gives",
        ".deliver/config:3 BUILD_USER: `whoami` is a command substitution: not run, left as is",
        f".deliver/config:3 BUILD_USER: {from_command}",
        ".deliver/config:4 BUILD_AT: $(date +%s) is a command substitution: not run, left as is",
        f".deliver/config:4 BUILD_AT: {from_command}",
        ".deliver/config:5 PRODUCTION_HOSTS: $(cat .deliver/hosts) is a command substitution: not run, left as is",
        f".deliver/config:5 PRODUCTION_HOSTS: {from_command}",
        ".deliver/config:6 DELIVER_TO: not mapped: APP is not known: edeliver deployed into DELIVER_TO/APP",
        ".deliver/config:7 COUNT: $((1 + 2)) is arithmetic: not run, left as is",
        ".deliver/config:7 COUNT: not mapped: not an edeliver setting",
    ]


def test_a_file_that_is_not_utf8_is_bad_input_naming_it() -> None:
    path = CONFIGS / "latin1.config"
    with pytest.raises(InvalidInput) as e:
        read(path)
    assert str(e.value) == (f"{path}: not UTF-8 text (byte 0xe9 on line 1); save it as UTF-8 and run "
                            "the import again")
    assert e.value.code == 2


def test_unknown_hook_names_and_helpers_are_reported() -> None:
    result = imported("unknown_hook")
    assert result.config["hooks"] == {"before_compile": ["cp ~/secrets/prod.secret.exs './config/'"]}
    assert report_lines(result)[4:] == [
        ".deliver/config:6 copy_secrets: not mapped: a helper function, not an edeliver hook: imported only "
        "where a hook calls it",
        ".deliver/config:7 copy_secrets: $BUILD_AT became .: the hook runs in the project's work tree",
        ".deliver/config:10 pre_erlang_clean_compiles: not mapped: edeliver calls no hook of this name, so it "
        "never ran (did you mean pre_erlang_clean_compile?)",
        ".deliver/config:14 post_erlang_clean_compile: mapped to deliver.hooks.before_compile (1 command; our "
        "build compiles and assembles the release in one step, so it runs before that step)",
        ".deliver/config:15 post_erlang_clean_compile: `copy_secrets` is a function of this file (line 6): its "
        "remote commands are imported here",
        ".deliver/config:18 pre_deploy: not mapped: edeliver calls no hook of this name, so it never ran",
    ]
    assert [(f.line, f.name) for f in result.unmapped] == [
        (6, "copy_secrets"), (10, "pre_erlang_clean_compiles"), (18, "pre_deploy")]


def test_a_config_laid_out_like_edelivers_readme() -> None:
    result = imported("readme_example")
    assert result.config == {
        "app": "greeter",
        "stage": "staging",
        "build": {"host": "builder@builder.greeter.example", "path": "/tmp/edeliver/greeter/builds"},
        "deploy_path": "/home/web/greeter",
        "stages": {"staging": {"hosts": ["web@staging.greeter.example"]}},
        "hooks": {"before_deps": [
            "ln -sfn '/home/builder/greeter.prod.secret.exs' './config/prod.secret.exs'"]},
    }
    assert report_lines(result)[8:] == [
        ".deliver/config:14 pre_erlang_get_and_update_deps: mapped to deliver.hooks.before_deps (1 command)",
        ".deliver/config:15 pre_erlang_get_and_update_deps: the function's variable _secret_config is put into "
        "the commands below",
        ".deliver/config:16 pre_erlang_get_and_update_deps: $TARGET_MIX_ENV is not set in the file: edeliver's "
        "default 'prod' is used",
        '.deliver/config:16 pre_erlang_get_and_update_deps: `if [ "$TARGET_MIX_ENV" = "prod" ]` is true with '
        "the file's values: its then-part is imported",
        ".deliver/config:18 pre_erlang_get_and_update_deps: $BUILD_AT became .: the hook runs in the project's "
        "work tree",
    ]
    assert result.unmapped == []


def test_top_level_blocks_and_commands_are_not_run() -> None:
    result = imported("top_level")
    assert result.config == {"app": "toplevel"}
    assert report_lines(result) == [
        ".deliver/config BUILD_HOST: no value imported: builds run on this machine (deliver.build.host: local)",
        ".deliver/config:1 APP: mapped to deliver.app",
        ".deliver/config:2 if: not mapped: a top-level `if` block is not run by the importer, so what it sets "
        "(BUILD_HOST) is not imported; set the values directly",
        ".deliver/config:7 for: not mapped: a top-level `for` block is not run by the importer; set the values "
        "directly",
        ".deliver/config:8 source: not mapped: `source ~/.edeliver-secrets` is not followed: the importer reads "
        "only this file",
        ".deliver/config:9 set: not mapped: `set -e` is a command: the importer does not run commands",
        ".deliver/config:10 HOSTS_LIST: not mapped: an array: not imported",
        '.deliver/config:11 PRODUCTION_HOSTS: not mapped: `[ -n "$APP" ] && PRODUCTION_HOSTS="p1.example.com"` '
        "is a command: the importer does not run commands, so the PRODUCTION_HOSTS in it is not imported",
    ]


def test_deploy_host_hooks_run_in_the_release_root() -> None:
    result = imported("deploy_hooks")
    assert result.config["hooks"] == {
        "before_extract": ["mkdir -p ./log"],
        "after_extract": ["ln -sfn ../shared/.env .env"],
        "after_start": ["curl -fsS http://localhost:4000/health"],
    }
    assert result.config["ssh"] == {"connect_timeout": 15}
    assert result.config["store"] == "ssh://releases@store.ticker.test/srv/releases"
    assert [(f.line, f.name, f.what) for f in result.unmapped] == [
        (10, "LINK_VM_ARGS", "not mapped: per-host vm.args/sys.config links are not made: give per-host values "
                             "as env (deliver.env, a stage's or a host's env) and read them in the release's "
                             "runtime config"),
        (11, "ECTO_REPOSITORY", "not mapped: inv migrate runs deliver.migrations.run (default "
                                "<App>.Release.migrate()), which migrates the repositories your release "
                                "module names"),
        (28, "pre_upgrade_release", 'not mapped: a hot upgrade runs no per-host shell hooks; a Python run-level '
                                    'hook (@hooks.before_run("upgrade") / @hooks.after_run("upgrade")) can do it'),
        (32, "post_erlang_update", "not mapped: it ran on your machine around `edeliver update`: write a Python "
                                   'run-level hook (@hooks.before_run("update") / @hooks.after_run("update")) '
                                   "in tasks.py"),
    ]
    lines = report_lines(result)
    assert ".deliver/config:21 post_extract_release_archive: dropped `cd . &&`: the hook runs in the release " \
           "root (deploy_path), which is $DELIVER_TO/$APP" in lines
    assert ".deliver/config:24 post_start_deployed_release: mapped to deliver.hooks.after_start (1 command; it " \
           "runs after every verified start)" in lines


def test_an_s3_store_is_mapped_without_its_credentials() -> None:
    result = import_text('APP=a\nRELEASE_STORE="s3://AKIAEXAMPLE@s3cr3t-key:bucket/team"\n')
    assert result.config["store"] == "s3://bucket/team"
    assert report_lines(result)[-1].startswith(
        ".deliver/config:2 RELEASE_STORE: mapped to deliver.store (the AWS keys are not written")
    assert "s3cr3t" not in invoke_yaml(result.config)
    assert not any("s3cr3t" in line or "AKIA" in line for line in report_lines(result))


@pytest.mark.parametrize("text, why", [
    ('BUILD_HOST="docker"\n', "docker builds are not supported: give a build host"),
    ('BUILD_HOST="b1.example.com b2.example.com"\n', "edeliver takes exactly one build host"),
    ('BUILD_HOST=""\n', "it is empty"),
])
def test_a_build_host_we_cannot_use_is_not_mapped(text: str, why: str) -> None:
    result = import_text("APP=a\n" + text + "BUILD_USER=b\nBUILD_AT=/x\n")
    assert "build" not in result.config
    assert [(f.line, f.name, f.what) for f in result.unmapped] == [
        (2, "BUILD_HOST", f"not mapped: {why}"),
        (3, "BUILD_USER", "not mapped: there is no usable BUILD_HOST for it to go with"),
        (4, "BUILD_AT", "not mapped: there is no usable BUILD_HOST: a local build lives under .deliver/"),
    ]


def test_a_local_release_store_gets_edelivers_releases_subdirectory() -> None:
    assert import_text("RELEASE_STORE=/var/releases/\n").config["store"] == "/var/releases/releases"
    assert import_text("RELEASE_STORE=.deliver\n").config["store"] == ".deliver/releases"


def test_builder_settings() -> None:
    result = import_text("BUILD_CMD=rebar3\nRELEASE_CMD=mix\nUSING_DISTILLERY=true\nREBAR_PROFILE=prod\n")
    assert result.config["builder"] == "rebar3"
    assert result.config["rebar3_profile"] == "prod"
    assert [(f.line, f.what) for f in result.unmapped] == [
        (2, "not mapped: differs from BUILD_CMD (rebar3): one tool builds and releases here"),
        (3, "not mapped: distillery is not used: mix builds run Elixir's own `mix release`"),
    ]
    assert import_text("BUILD_CMD=rebar\n").unmapped[0].what == \
        "not mapped: 'rebar' builds are not supported: deliver.builder is mix or rebar3"


def test_auto_version_is_kept_as_given_and_unknown_pieces_are_flagged() -> None:
    result = import_text('AUTO_VERSION="commit-count+git-revision"\n')
    assert result.config == {"auto_version": "commit-count+git-revision"}
    assert result.report[-1].what == "mapped to deliver.auto_version"
    odd = import_text("AUTO_VERSION=revision+count\n")
    assert odd.config == {"auto_version": "revision+count"}  # kept as given: the loader names it
    assert odd.report[-1].what == (
        "mapped to deliver.auto_version (check it: 'count' is not a piece we know (branch, "
        "branch-unless-master, commit-count, commit-count-all, date, mix-env, revision, time))")
    spaced = import_text('AUTO_VERSION="revision branch"\n')
    assert spaced.report[-1].what == ("mapped to deliver.auto_version (check it: edeliver also took "
                                      "spaces between pieces; here they are joined by + only)")


def test_unmapped_is_exactly_the_not_mapped_part_of_the_report() -> None:
    for name in FIXTURES:
        result = imported(name)
        assert result.unmapped == [f for f in result.report if f.what.startswith("not mapped: ")]
        assert [f.line for f in result.report] == sorted(f.line for f in result.report)


def test_no_host_or_hook_function_goes_unreported() -> None:
    for name in FIXTURES:
        text = read(CONFIGS / f"{name}.config")
        result = import_text(text)
        reported = {(f.line, f.name) for f in result.report}
        for number, line in enumerate(text.splitlines(), 1):
            head = line.strip().removeprefix("export ").split("=")[0]
            if head.endswith("_HOSTS") and "=" in line and not line.startswith((" ", "\t", "[")):
                assert (number, head) in reported, (name, number)
            if line.rstrip().endswith("{") and "()" in line:
                assert (number, line.split("(")[0].strip()) in reported, (name, number)


@pytest.mark.parametrize("name", FIXTURES)
def test_the_written_yaml_reads_back_and_our_loader_accepts_it(name: str, tmp_path: Path) -> None:
    yaml = pytest.importorskip("yaml")  # only to check the text; the importer does not use it
    result = imported(name)
    assert yaml.safe_load(invoke_yaml(result.config)) == {"deliver": result.config}
    wanted = copy.deepcopy(result.config)
    (tmp_path / "mix.exs").write_text("")
    wanted["project_dir"] = str(tmp_path)
    if name == "command_substitution":  # APP comes from a command: nothing to load
        with pytest.raises(InvalidInput, match="deliver.app is empty"):
            deliver_config.load({"deliver": wanted})
        return
    settings = deliver_config.load({"deliver": wanted})
    assert settings.app == result.config["app"]
    assert settings.auto_version == result.config.get("auto_version", "")
    assert {k: list(v) for k, v in settings.hooks.items()} == result.config.get("hooks", {})
    assert {n: [h.name for h in s.hosts] for n, s in settings.stages.items()} == {
        n: s["hosts"] for n, s in result.config.get("stages", {}).items()}
    default_path = result.config.get("deploy_path", f"apps/{settings.app}")
    for name_, stage in settings.stages.items():
        wanted_path = result.config["stages"][name_].get("deploy_path", default_path)
        assert {h.deploy_path for h in stage.hosts} == {wanted_path}
