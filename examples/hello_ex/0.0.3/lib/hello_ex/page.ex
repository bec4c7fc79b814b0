defmodule HelloEx.Page do
  @moduledoc """
  The `/` page, compiled from an EEx template (like a Phoenix view).

  The greeting word comes from the `greeter` dependency, and the page names the
  running `greeter` version (read at run time, so a hot upgrade of greeter shows).
  """
  require EEx

  @version Mix.Project.config()[:version]
  @template Path.join(__DIR__, "templates/page.html.eex")
  @external_resource @template

  EEx.function_from_file(:defp, :render_template, @template, [:assigns])

  @doc "Renders the page for the given visit count."
  def render(visits) do
    {:ok, greeter_vsn} = :application.get_key(:greeter, :vsn)

    render_template(
      word: Greeter.word(),
      version: @version,
      visits: visits,
      greeter_vsn: greeter_vsn
    )
  end
end
