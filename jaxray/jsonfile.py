"""Reading the JSON records a run or a prepared dataset keeps, with an error a user can act on.

A record truncated by a crash or edited by hand must stop the command with the file, the line and
what to do about it, never with a traceback from the json module.
"""

import json
import pathlib


def loads(text: str, path: pathlib.Path, remedy: str, line: int | None = None):
  """`text` (from `path`, or its `line` for one-record-a-line files) decoded.

  `remedy` says what the file holds and how to get a good one back; it ends the error message.
  """
  try:
    return json.loads(text)
  except json.JSONDecodeError as error:
    raise ValueError(f"{path}, line {line or error.lineno}: not valid JSON ({error.msg}). "
                     f"{remedy}") from None


def read(path: pathlib.Path, remedy: str):
  """The JSON file at `path` decoded; see `loads` for `remedy`."""
  return loads(pathlib.Path(path).read_text(), path, remedy)
