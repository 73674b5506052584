"""A run's folder: everything jaxray reads or writes in `--workdir`.

config.json, metrics.jsonl, runtime.json, results.json (`results`, its one reader and writer),
the predictions CSVs, orbax checkpoints, TensorBoard event files, and the test-only kill points.
The package sits at the bottom of jaxray's layers: it imports nothing above it.
"""
