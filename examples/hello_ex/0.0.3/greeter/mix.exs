defmodule Greeter.MixProject do
  use Mix.Project

  def project do
    [
      app: :greeter,
      version: "1.0.0",
      elixir: "~> 1.14",
      deps: []
    ]
  end

  def application do
    []
  end
end
