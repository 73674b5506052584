"""What the command-line entry points share: a user error ends the command with its message."""

import sys


def fail(error) -> None:
  """Prints `error` (what went wrong and how to fix it) and exits with status 2, no traceback:
  bad flags, config fields or files are the user's to fix, not jaxray's bugs."""
  print(f"\nerror: {error}", file=sys.stderr)
  sys.exit(2)
