defmodule HelloEx.Counter do
  @moduledoc """
  Counts page visits. State (0.0.2): `%{visits: n, since: unix_seconds}`.

  0.0.1 kept a bare integer; `code_change/3` converts it on a hot upgrade
  (and back on a downgrade).
  """
  use GenServer

  def start_link(_opts), do: GenServer.start_link(__MODULE__, 0, name: __MODULE__)

  @doc "Increments the visit counter and returns the new count."
  def hit, do: GenServer.call(__MODULE__, :hit)

  @doc "Returns the current count without incrementing it."
  def count, do: GenServer.call(__MODULE__, :count)

  @impl true
  def init(visits), do: {:ok, new_state(visits)}

  @impl true
  def handle_call(:hit, _from, %{visits: n} = state),
    do: {:reply, n + 1, %{state | visits: n + 1}}

  def handle_call(:count, _from, %{visits: n} = state), do: {:reply, n, state}

  @impl true
  def code_change({:down, _vsn}, %{visits: n}, _extra), do: {:ok, n}
  def code_change(_vsn, visits, _extra) when is_integer(visits), do: {:ok, new_state(visits)}
  def code_change(_vsn, state, _extra), do: {:ok, state}

  defp new_state(visits), do: %{visits: visits, since: System.system_time(:second)}
end
