"""The `jaxray` console script: `jaxray [main flags]` trains, `jaxray predict ...` classifies
files with a finished run, `jaxray compare RUN_DIR ...` compares runs on their shared test set."""

import importlib
import sys

COMMANDS = {"predict": "jaxray.predict", "compare": "jaxray.compare"}


def run():
  if len(sys.argv) > 1 and sys.argv[1] in COMMANDS:
    command = sys.argv.pop(1)
    sys.argv[0] = f"jaxray {command}"
    importlib.import_module(COMMANDS[command]).run()
  else:
    importlib.import_module("jaxray.main").run()
