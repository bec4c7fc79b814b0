defmodule HelloEx.Release do
  @moduledoc """
  The release's migrations, as `inv migrate` / `inv migrations` run them
  (`HelloEx.Release.migrate()`, `rollback(to)`, `pending()`).

  The "database" is a DETS file under the release root, `data/hello.dets`, made on
  first use. A migration is a file `priv/migrations/NNN_name.term` of
  `{set, Key, Value}.` Erlang terms: applying it sets those keys and records
  `{{:migration, nnn}, name, undo}`, where `undo` puts back what each key held.
  A version adds migrations by adding files to `priv/`, so this module stays the
  same in every version. The file is opened and closed by every call: a fresh VM
  can migrate while the node runs.
  """

  @table :hello_ex_migrations

  @doc "The migrations not applied yet, oldest first: `[\"001_greetings\", ...]`."
  def pending, do: with_table(fn t -> for {_n, name, _path} <- todo(t), do: name end)

  @doc "Applies the pending migrations in order; returns the names applied."
  def migrate, do: with_table(fn t -> for m <- todo(t), do: up(t, m) end)

  @doc "Undoes the applied migrations numbered above `to`, newest first; returns their names."
  def rollback(to) when is_integer(to) and to >= 0 do
    with_table(fn t ->
      for {n, _, _} = m <- Enum.reverse(done(t)), n > to, do: down(t, m)
    end)
  end

  @doc "The numbers of the applied migrations."
  def applied, do: with_table(fn t -> for {n, _, _} <- done(t), do: n end)

  defp done(t) do
    rows = :dets.match_object(t, {{:migration, :_}, :_, :_})
    Enum.sort(for {{:migration, n}, name, undo} <- rows, do: {n, name, undo})
  end

  defp todo(t) do
    dir = Path.join(:code.priv_dir(:hello_ex), "migrations")

    for file <- dir |> File.ls!() |> Enum.filter(&String.ends_with?(&1, ".term")) |> Enum.sort(),
        n = file |> String.split("_", parts: 2) |> hd() |> String.to_integer(),
        :dets.lookup(t, {:migration, n}) == [],
        do: {n, Path.rootname(file), Path.join(dir, file)}
  end

  defp up(t, {n, name, path}) do
    {:ok, changes} = :file.consult(String.to_charlist(path))
    undo = for {:set, key, value} <- changes, do: set(t, key, value)
    :ok = :dets.insert(t, {{:migration, n}, name, Enum.reverse(undo)})
    name
  end

  defp set(t, key, value) do
    before =
      case :dets.lookup(t, key) do
        [{^key, old}] -> {key, {:was, old}}
        [] -> {key, :none}
      end

    :ok = :dets.insert(t, {key, value})
    before
  end

  defp down(t, {n, name, undo}) do
    Enum.each(undo, fn
      {key, :none} -> :ok = :dets.delete(t, key)
      {key, {:was, old}} -> :ok = :dets.insert(t, {key, old})
    end)

    :ok = :dets.delete(t, {:migration, n})
    name
  end

  defp with_table(fun) do
    file = Path.join([:code.root_dir(), "data", "hello.dets"])
    File.mkdir_p!(Path.dirname(file))
    {:ok, t} = :dets.open_file(@table, file: String.to_charlist(file), type: :set)

    try do
      fun.(t)
    after
      :ok = :dets.close(t)
    end
  end
end
