"""Error reports logged on a node while a hot upgrade installs and is checked: a temporary
logger_std_h handler at level error writes them to ROOT/tmp/pdt_upgrade_errors.log."""

from __future__ import annotations

from . import _expr

WATCH_FILE = 'filename:join([code:root_dir(), "tmp", "pdt_upgrade_errors.log"])'

WATCH_START = """
begin
  {text},
  PdtFile = {file},
  ok = filelib:ensure_dir(PdtFile),
  _ = logger:remove_handler(pdt_upgrade_watch),
  _ = file:delete(PdtFile),
  PdtR = logger:add_handler(pdt_upgrade_watch, logger_std_h,
    #{{level => error, config => #{{file => PdtFile}},
      formatter => {{logger_formatter, #{{single_line => true}}}}}}),
  lists:flatten(io_lib:format("PDT{{watching=~s;watch_result=~s}}",
                              [PdtR =:= ok, PdtText(PdtR)]))
end.
"""

WATCH_END = """
begin
  {text},
  PdtFile = {file},
  _ = (catch logger_std_h:filesync(pdt_upgrade_watch)),
  _ = logger:remove_handler(pdt_upgrade_watch),
  PdtLog = case file:read_file(PdtFile) of {{ok, B}} -> B; _ -> <<>> end,
  _ = file:delete(PdtFile),
  PdtTail = binary:part(PdtLog, max(0, byte_size(PdtLog) - 3000), min(3000, byte_size(PdtLog))),
  lists:flatten(io_lib:format("PDT{{pid=~s;errors=~s}}",
                              [os:getpid(), base64:encode_to_string(PdtTail)]))
end.
"""


def watch_start_expr() -> str:
    return _expr(WATCH_START, file=WATCH_FILE)


def watch_end_expr() -> str:
    return _expr(WATCH_END, file=WATCH_FILE)


