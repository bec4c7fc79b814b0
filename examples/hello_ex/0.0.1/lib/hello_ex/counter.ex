defmodule HelloEx.Counter do
  @moduledoc "Counts page visits. State (0.0.1): an integer."
  use GenServer

  def start_link(_opts), do: GenServer.start_link(__MODULE__, 0, name: __MODULE__)

  @doc "Increments the visit counter and returns the new count."
  def hit, do: GenServer.call(__MODULE__, :hit)

  @doc "Returns the current count without incrementing it."
  def count, do: GenServer.call(__MODULE__, :count)

  @impl true
  def init(visits), do: {:ok, visits}

  @impl true
  def handle_call(:hit, _from, visits), do: {:reply, visits + 1, visits + 1}
  def handle_call(:count, _from, visits), do: {:reply, visits, visits}
end
