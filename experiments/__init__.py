"""One file per run of the reports; `python -m jaxray.main --experiment=NAME`."""
