defmodule HelloEx.Page do
  @moduledoc "The `/` page, compiled from an EEx template (like a Phoenix view)."
  require EEx

  @version Mix.Project.config()[:version]
  @template Path.join(__DIR__, "templates/page.html.eex")
  @external_resource @template

  EEx.function_from_file(:defp, :render_template, @template, [:assigns])

  @doc "Renders the page for the given visit count."
  def render(visits), do: render_template(version: @version, visits: visits)
end
