#!/usr/bin/env bash
# Install what pydeliver_tasks, its demo and its tests need on Debian 12, as root:
# Python 3 + venv, git, OpenSSH (server and client), Erlang/OTP 25, Elixir 1.14, rebar3,
# makes sure this host's own name resolves (erl_call needs it), then a virtualenv at <repo>/.venv
# with the package installed editable (plus test tools and MkDocs for the docs site).
#
#   bash examples/setup-debian.sh
#
# Idempotent: what is already there is kept, so a second run takes a second or two.
# Works on a bare Debian 12 minbase (no python3, no git, no Erlang). pip honours PIP_CERT.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV="$REPO/.venv"
say() { printf 'setup: %s\n' "$*"; }

PACKAGES=(
  python3 python3-venv python3-pip git ca-certificates openssh-server openssh-client procps curl
  # the load balancer the tests put in front of sandbox hosts, and how its socket is reached
  haproxy socat
  # Erlang/OTP: rebar3 needs crypto, asn1, public_key, ssl, inets at start; mix and relx need
  # parsetools, syntax_tools, tools; sasl (release_handler) is in erlang-base.
  erlang-base erlang-crypto erlang-asn1 erlang-public-key erlang-ssl erlang-inets
  erlang-parsetools erlang-syntax-tools erlang-tools elixir
)

installed() {  # are all the given Debian packages installed?
  local p
  for p in "$@"; do
    [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" = "install ok installed" ] || return 1
  done
}

need_root() {
  if [ "$(id -u)" -ne 0 ]; then
    say "this step needs root (apt-get, /usr/local/bin): run it as root" >&2
    exit 1
  fi
}

# ---- Debian packages ----
if installed "${PACKAGES[@]}"; then
  say "Debian packages: all present"
else
  need_root
  export DEBIAN_FRONTEND=noninteractive
  say "apt-get update"
  apt-get update -q >/dev/null
  say "apt-get install: ${PACKAGES[*]}"
  apt-get install -y -q --no-install-recommends "${PACKAGES[@]}" >/dev/null
  say "Debian packages installed"
fi

# ---- rebar3: the escript only (the Debian package would pull in wx/GTK, ~300 MB) ----
if command -v rebar3 >/dev/null 2>&1; then
  say "rebar3: present ($(command -v rebar3))"
else
  need_root
  tmp=$(mktemp -d)
  chmod 755 "$tmp"  # apt-get download drops to user _apt
  (cd "$tmp" && apt-get download -q rebar3 >/dev/null 2>&1) || {
    say "apt-get download rebar3 failed; retrying after apt-get update"
    apt-get update -q >/dev/null
    (cd "$tmp" && apt-get download -q rebar3 >/dev/null)
  }
  dpkg-deb -x "$tmp"/rebar3_*.deb "$tmp/x"
  install -m755 "$tmp/x/usr/bin/rebar3" /usr/local/bin/rebar3
  rm -rf "$tmp"
  say "rebar3 installed in /usr/local/bin/rebar3"
fi

# ---- the host's own name must resolve ----
# erl_call, which relx (rebar3) start scripts use for ping/rpc/daemon, looks up this machine's name
# and crashes when it does not resolve: `bin/<app> daemon` then waits for ever. Debian's installer
# writes "127.0.1.1 <hostname>" to /etc/hosts; minimal images and chroots may have no /etc/hosts.
name=$(uname -n)
if ! getent hosts localhost >/dev/null || ! getent hosts "$name" >/dev/null; then
  need_root
  getent hosts localhost >/dev/null || printf '127.0.0.1\tlocalhost\n' >>/etc/hosts
  getent hosts "$name" >/dev/null || printf '127.0.1.1\t%s\n' "$name" >>/etc/hosts
  say "/etc/hosts: made localhost and this host's name ($name) resolve"
else
  say "host name $name resolves"
fi

# ---- the virtualenv with pydeliver_tasks (editable), the test tools and MkDocs ----
if [ ! -x "$VENV/bin/python" ]; then
  say "creating $VENV"
  python3 -m venv "$VENV"
fi
# Reinstall only when the package metadata changed (or the install is broken).
stamp="$VENV/.pydeliver-setup"
want=$(cat "$REPO/setup.cfg" "$REPO/pyproject.toml" | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" = "$want" ] \
   && "$VENV/bin/python" -c 'import pydeliver_tasks, pytest' 2>/dev/null \
   && [ -x "$VENV/bin/inv" ] && [ -x "$VENV/bin/ruff" ] && [ -x "$VENV/bin/mkdocs" ]; then
  say "venv: pydeliver_tasks[test,docs] installed ($VENV)"
else
  say "pip install -e $REPO[test,docs]"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e "$REPO[test,docs]"
  echo "$want" >"$stamp"
  say "venv ready: $VENV"
fi
erts=$(erl -noshell -eval 'io:format("~s", [erlang:system_info(version)]), halt().' 2>/dev/null || true)
elixir=$(elixir --version 2>/dev/null | sed -n 's/^Elixir \([^ ]*\).*/\1/p' || true)
say "done: $("$VENV/bin/python" --version), erts ${erts:-?}, Elixir ${elixir:-?}, $(rebar3 version 2>/dev/null | cut -d' ' -f1-2 || true)"
