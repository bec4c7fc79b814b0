defmodule HelloEx.Web do
  @moduledoc """
  `:inets` httpd callback module (implements `do/1`) and its child spec.

  `GET /` renders `HelloEx.Page` with a fresh visit count, `GET /health`
  returns `ok`, anything else is a 404.
  """
  require Record
  Record.defrecordp(:mod, Record.extract(:mod, from_lib: "inets/include/httpd.hrl"))

  @doc "Child spec: a stand-alone httpd linked to (and supervised by) our supervisor."
  def child_spec(opts) do
    %{
      id: __MODULE__,
      start: {:inets, :start, [:httpd, httpd_config(opts), :stand_alone]},
      type: :supervisor
    }
  end

  defp httpd_config(opts) do
    {:ok, ip} = opts |> Keyword.fetch!(:ip) |> String.to_charlist() |> :inet.parse_address()
    root = :hello_ex |> Application.app_dir() |> String.to_charlist()

    [
      port: Keyword.fetch!(opts, :port),
      bind_address: ip,
      server_name: ~c"hello_ex",
      server_root: root,
      document_root: root,
      modules: [__MODULE__]
    ]
  end

  # `do` is a reserved word in Elixir, hence `unquote(:do)` for httpd's do/1 callback.
  @doc false
  def unquote(:do)(mod(method: method, request_uri: uri)) do
    [path | _query] = :string.split(uri, ~c"?")
    route(List.to_string(method), List.to_string(path))
  end

  defp route("GET", "/"),
    do: reply(200, "text/html; charset=utf-8", HelloEx.Page.render(HelloEx.Counter.hit()))

  defp route("GET", "/health"), do: reply(200, "text/plain", "ok")
  defp route(_method, _path), do: reply(404, "text/plain", "not found")

  defp reply(code, type, body) do
    body = IO.iodata_to_binary(body)

    head = [
      code: code,
      content_type: String.to_charlist(type),
      content_length: body |> byte_size() |> Integer.to_charlist()
    ]

    {:proceed, [response: {:response, head, [body]}]}
  end
end
