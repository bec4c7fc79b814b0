"""Projects as users have them, made at test time by `mix new my_shop --sup` and by
`rebar3 new release shop_erl`, then changed the way a product changes from release to release
(each change committed and tagged as a version).

my_shop (mix):

0.1.0  what the docs ask for (sasl, inets) plus a web page, runtime.exs (motd from $MOTD), a
       GenServer (Keeper) that keeps a fun made by MyShop.Formatter in its state
0.1.1  the page's title changes (a text change: hot)
0.1.2  runtime.exs's default motd changes (hot, the new value applied)
0.1.3  a child (MyShop.Stats) is added in Application.start/2 and used by the page (not hot)
0.1.4  MyShop.Formatter changes while Keeper holds a fun it made (not hot on a running node)
0.1.5  the child is removed again (not hot)
0.1.6  the title changes again (hot)

shop_erl (rebar3, relx):
0.1.0  as generated, with config/sys.config.src (motd from ${MOTD}) instead of sys.config
0.1.1  a module added (hot; the rendered motd must survive)
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples"))
from make_repo import GIT_CONFIG as GIT_CONFIG  # noqa: E402  (for tests that commit)
from make_repo import commit_version, init_repo  # noqa: E402

APP = "my_shop"
VERSIONS = ("0.1.0", "0.1.1", "0.1.2", "0.1.3", "0.1.4", "0.1.5", "0.1.6")

WEB = '''defmodule MyShop.Web do
  @moduledoc "The shop's page (:inets httpd callback): GET / and GET /health."
  require Record
  Record.defrecordp(:mod, Record.extract(:mod, from_lib: "inets/include/httpd.hrl"))

  def child_spec(_opts) do
    {:ok, ip} = System.get_env("HTTP_IP", "127.0.0.1") |> String.to_charlist() |> :inet.parse_address()
    port = System.get_env("HTTP_PORT", "4000") |> String.to_integer()
    root = :my_shop |> Application.app_dir() |> String.to_charlist()
    config = [port: port, bind_address: ip, server_name: ~c"my_shop", server_root: root,
              document_root: root, modules: [__MODULE__]]
    %{id: __MODULE__, start: {:inets, :start, [:httpd, config, :stand_alone]}, type: :supervisor}
  end

  def unquote(:do)(mod(request_uri: uri)) do
    case uri do
      ~c"/health" -> reply(200, "ok")
      ~c"/" -> reply(200, MyShop.Page.render())
      _ -> reply(404, "not found")
    end
  end

  defp reply(code, body) do
    head = [code: code, content_type: ~c"text/html", content_length: Integer.to_charlist(byte_size(body))]
    {:proceed, [response: {:response, head, [body]}]}
  end
end
'''

PAGE = '''defmodule MyShop.Page do
  @moduledoc "What GET / shows: the title, the configured motd, what Keeper says."
  def title, do: "TITLE"

  def render do
    motd = Application.get_env(:my_shop, :motd)
    "<h1>#{title()}</h1><p>motd=#{motd}</p><p>keeper=#{MyShop.Keeper.show("x")}</p>EXTRA"
  end
end
'''

KEEPER = '''defmodule MyShop.Keeper do
  @moduledoc "Keeps a formatting fun (made by MyShop.Formatter) in its state."
  use GenServer
  def start_link(_), do: GenServer.start_link(__MODULE__, [], name: __MODULE__)
  def show(x), do: GenServer.call(__MODULE__, {:show, x})
  @impl true
  def init(_), do: {:ok, %{fmt: MyShop.Formatter.make("v1")}}
  @impl true
  def handle_call({:show, x}, _from, state), do: {:reply, state.fmt.(x), state}
end
'''

FORMATTER = '''defmodule MyShop.Formatter do
  @moduledoc "Makes the formatting funs Keeper keeps."
  def make(prefix), do: fn x -> prefix <> SEP <> x end
end
'''

STATS = '''defmodule MyShop.Stats do
  @moduledoc "A child added to the application's supervisor in 0.1.3."
  use Agent
  def start_link(_), do: Agent.start_link(fn -> "stats-ready" end, name: __MODULE__)
  def label, do: Agent.get(__MODULE__, & &1)
end
'''

# what the application is told when its env changes (release_handler calls it after an upgrade)
CONFIG_CHANGE = '''  @impl true
  def config_change(changed, _new, _removed) do
    :persistent_term.put(:my_shop_config_change, changed)
    :ok
  end
'''

RUNTIME = '''import Config
config :my_shop, motd: System.get_env("MOTD", "MOTD_DEFAULT")
'''


def _sub(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, (path, old)
    path.write_text(text.replace(old, new, 1))


def _version(d: Path, old: str, new: str) -> None:
    _sub(d / "mix.exs", f'version: "{old}"', f'version: "{new}"')


def make_shop(base: Path) -> Path:
    """`mix new my_shop --sup` in base, then every version above committed and tagged."""
    subprocess.run(["mix", "new", APP, "--sup"], cwd=base, check=True, capture_output=True,
                   env={"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(base), "LANG": "C.UTF-8"})
    d = base / APP
    lib = d / "lib" / APP
    init_repo(d)
    # 0.1.0: what docs/quickstart asks of a mix project (sasl for hot upgrades), a web page
    _sub(d / "mix.exs", 'version: "0.1.0"', 'version: "0.1.0"')
    _sub(d / "mix.exs", "extra_applications: [:logger]", "extra_applications: [:logger, :sasl, :inets]")
    (d / "config").mkdir(exist_ok=True)
    (d / "config" / "runtime.exs").write_text(RUNTIME.replace("MOTD_DEFAULT", "motd-one"))
    (lib / "web.ex").write_text(WEB)
    (lib / "page.ex").write_text(PAGE.replace("TITLE", "Shop one").replace("EXTRA", ""))
    (lib / "keeper.ex").write_text(KEEPER)
    (lib / "formatter.ex").write_text(FORMATTER.replace("SEP", '":"'))
    _sub(lib / "application.ex", "# {MyShop.Worker, arg}", "MyShop.Keeper,\n      MyShop.Web")
    _sub(lib / "application.ex", "    Supervisor.start_link(children, opts)\n  end\n",
         "    Supervisor.start_link(children, opts)\n  end\n\n" + CONFIG_CHANGE)
    (d / "tasks.py").write_text("from pydeliver_tasks import ns  # noqa: F401\n")
    (d / "invoke.yaml").write_text(f"deliver:\n  app: {APP}\n")
    commit_version(d, APP, "0.1.0")
    # 0.1.1: a text change
    _version(d, "0.1.0", "0.1.1")
    _sub(lib / "page.ex", "Shop one", "Shop two")
    commit_version(d, APP, "0.1.1")
    # 0.1.2: a runtime.exs value changes
    _version(d, "0.1.1", "0.1.2")
    _sub(d / "config" / "runtime.exs", "motd-one", "motd-two")
    commit_version(d, APP, "0.1.2")
    # 0.1.3: a child added in Application.start/2, used by the page
    _version(d, "0.1.2", "0.1.3")
    (lib / "stats.ex").write_text(STATS)
    _sub(lib / "application.ex", "MyShop.Keeper,", "MyShop.Keeper,\n      MyShop.Stats,")
    _sub(lib / "page.ex", "</p>\"", "</p><p>stats=#{MyShop.Stats.label()}</p>\"")
    commit_version(d, APP, "0.1.3")
    # 0.1.4: the module whose fun Keeper keeps changes (Keeper itself does not)
    _version(d, "0.1.3", "0.1.4")
    _sub(lib / "formatter.ex", '":"', '"|"')
    commit_version(d, APP, "0.1.4")
    # 0.1.5: the child is removed again
    _version(d, "0.1.4", "0.1.5")
    (lib / "stats.ex").unlink()
    _sub(lib / "application.ex", "\n      MyShop.Stats,", "")
    _sub(lib / "page.ex", "<p>stats=#{MyShop.Stats.label()}</p>", "")
    commit_version(d, APP, "0.1.5")
    # 0.1.6: a text change again
    _version(d, "0.1.5", "0.1.6")
    _sub(lib / "page.ex", "Shop two", "Shop three")
    commit_version(d, APP, "0.1.6")
    return d


ERL_APP = "shop_erl"


def make_shop_erl(base: Path) -> Path:
    """`rebar3 new release shop_erl` in base, then its versions committed and tagged."""
    subprocess.run(["rebar3", "new", "release", ERL_APP], cwd=base, check=True,
                   capture_output=True, env={"PATH": "/usr/local/bin:/usr/bin:/bin",
                                             "HOME": str(base)})
    d = base / ERL_APP
    src = d / "apps" / ERL_APP / "src"
    init_repo(d)
    # what relx's own comment in the generated rebar.config says to do for env-driven config
    _sub(d / "rebar.config", '{sys_config, "./config/sys.config"},',
         '{sys_config_src, "./config/sys.config.src"},')
    (d / "config" / "sys.config").unlink()
    (d / "config" / "sys.config.src").write_text('[{shop_erl, [{motd, "${MOTD}"}]}].\n')
    (d / ".gitignore").write_text("_build/\n.deliver/\n")
    (d / "tasks.py").write_text("from pydeliver_tasks import ns  # noqa: F401\n")
    (d / "invoke.yaml").write_text(f"deliver:\n  app: {ERL_APP}\n  builder: rebar3\n"
                                   "  rebar3_profile: prod\n")
    commit_version(d, ERL_APP, "0.1.0")
    _sub(d / "rebar.config", '{shop_erl, "0.1.0"}', '{shop_erl, "0.1.1"}')
    _sub(src / "shop_erl.app.src", '{vsn, "0.1.0"}', '{vsn, "0.1.1"}')
    (src / "shop_erl_page.erl").write_text(
        "-module(shop_erl_page).\n-export([title/0]).\ntitle() -> <<\"Shop\">>.\n")
    commit_version(d, ERL_APP, "0.1.1")
    return d


# Erlang for `inv eval` on a relx node: the same snapshot as SNAPSHOT.
_ERL_SNAP = (
    "W = fun Walk(Sup) -> lists:sort([{Id, case {T, is_pid(P)} of {supervisor, true} -> Walk(P); "
    "_ -> is_pid(P) end} || {Id, P, T, _} <- supervisor:which_children(Sup)]) end, "
    "Env = [{A, lists:sort(application:get_all_env(A))} || "
    "{A, _, _} <- lists:sort(application:loaded_applications())], "
    "Tree = [{A, W(Top)} || {A, _, _} <- lists:sort(application:which_applications()), "
    "M <- [application_controller:get_master(A)], is_pid(M), "
    "{Top, _} <- [application_master:get_child(M)], is_pid(Top)], "
)
# relx's eval pretty-prints a result over many lines: compare a digest (one line) and show the
# whole term (SNAPSHOT_ERL_TERM) when two differ
SNAPSHOT_ERL = (_ERL_SNAP + "\"SNAP \" ++ binary_to_list(binary:encode_hex(erlang:md5("
                "term_to_binary({Env, Tree})))).")
SNAPSHOT_ERL_TERM = _ERL_SNAP + "{Env, Tree}."


# Elixir for `inv eval`: what a fresh boot decides — every loaded application's env and the
# supervision trees' child ids (recursively), as one line.
SNAPSHOT = (
    "walk = fn walk, sup -> sup |> Supervisor.which_children() |> Enum.map(fn {id, pid, type, _} "
    "-> {id, if(type == :supervisor and is_pid(pid), do: walk.(walk, pid), else: is_pid(pid))} "
    "end) |> Enum.sort() end; "
    "apps = Application.loaded_applications() |> Enum.map(&elem(&1, 0)) |> Enum.sort(); "
    "env = for a <- apps, do: {a, a |> Application.get_all_env() |> Enum.sort()}; "
    "tree = for {a, _, _} <- Enum.sort(Application.started_applications()), "
    "m = :application_controller.get_master(a), is_pid(m), "
    "{top, _} = :application_master.get_child(m), is_pid(top), do: {a, walk.(walk, top)}; "
    "IO.puts(\"SNAP \" <> inspect({env, tree}, limit: :infinity, printable_limit: :infinity))"
)


def snapshots(out: str) -> dict[str, str]:
    """{host: snapshot line} from `inv eval SNAPSHOT` output."""
    return dict(re.findall(r'^\[(\S+)\] "?SNAP (.*?)"?$', out, re.M))
