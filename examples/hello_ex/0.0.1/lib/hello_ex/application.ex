defmodule HelloEx.Application do
  @moduledoc """
  Starts the visit counter and the `:inets` HTTP server.

  The HTTP server listens on `HTTP_IP` (default `127.0.0.1`) and `HTTP_PORT`
  (default `4000`), both read at run time. If the port cannot be bound the
  supervisor fails to start, so the application (and the release) fails to boot.
  `BOOT_DELAY_MS` (default 0) makes the start slow on purpose, like an app that
  warms caches or waits for a database: the deploy tool must wait, not cry "down".
  """
  use Application

  @impl true
  def start(_type, _args) do
    ip = System.get_env("HTTP_IP", "127.0.0.1")
    port = "HTTP_PORT" |> System.get_env("4000") |> String.to_integer()
    "BOOT_DELAY_MS" |> System.get_env("0") |> String.to_integer() |> Process.sleep()

    children = [
      HelloEx.Counter,
      {HelloEx.Web, ip: ip, port: port}
    ]

    Supervisor.start_link(children, strategy: :one_for_one, name: HelloEx.Supervisor)
  end
end
