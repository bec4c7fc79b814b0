defmodule Greeter do
  @moduledoc "A dependency of hello_ex (in this repository): the page's greeting word."

  @doc "The greeting word (greeter 1.0.1)."
  def word, do: "Hiya"
end
