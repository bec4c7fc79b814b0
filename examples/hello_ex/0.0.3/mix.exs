defmodule HelloEx.MixProject do
  use Mix.Project

  def project do
    [
      app: :hello_ex,
      version: "0.0.3",
      elixir: "~> 1.14",
      start_permanent: Mix.env() == :prod,
      # greeter lives in this repository (greeter/, not deps/: deps/ is build output)
      deps: [{:greeter, path: "greeter"}],
      releases: [
        hello_ex: [include_executables_for: [:unix]]
      ]
    ]
  end

  def application do
    [
      extra_applications: [:logger, :sasl, :inets, :eex],
      mod: {HelloEx.Application, []}
    ]
  end
end
