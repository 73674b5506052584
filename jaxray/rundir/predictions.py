"""predictions_<split>.csv: every example's prediction by the run's evaluated weights.

One row per example: its index in the split, file name, patient id, true label, the probability
of every class, and the decisions at argmax and (binary runs with one) at the val threshold.
Every metric of results.json can be recomputed from these files with pandas or scikit-learn, folds
pooled, and two runs compared example by example (`jaxray.compare`). The split is identified by
`split_hash`, a hash of its examples' ids (index and file name), on every row: two runs share a
test set exactly when their hashes are equal.
"""

import csv
import hashlib
import pathlib

import numpy as np


def file_name(split: str) -> str:
  return f"predictions_{split}.csv"


def split_hash(index, file_names) -> str:
  """16 hex digits of the SHA-256 of the split's example ids, in index order."""
  ids = "\n".join(f"{int(i)}\t{name}" for i, name in zip(index, file_names))
  return hashlib.sha256(ids.encode()).hexdigest()[:16]


def columns(class_names, with_threshold: bool) -> list[str]:
  return (["index", "file_name", "patient_id", "label", "label_name"]
          + [f"prob_{name}" for name in class_names] + ["pred_argmax"]
          + (["pred_threshold"] if with_threshold else []) + ["split_hash"])


def multilabel_columns(finding_names) -> list[str]:
  return (["index", "file_name", "patient_id"] + [f"label_{name}" for name in finding_names]
          + [f"prob_{name}" for name in finding_names]
          + [f"pred_{name}" for name in finding_names] + ["split_hash"])


def write(workdir, split: str, prediction: dict, class_names, threshold=None,
          thresholds=None) -> dict:
  """Writes predictions_<split>.csv; its record for results.json (file, split_hash, rows).

  Probabilities are written with 9 significant digits, which round-trip float32 exactly, so a
  metric recomputed from the file equals results.json's. A multi-label run (labels (N, K)) writes
  per finding its label (1, 0, or empty when unknown), probability and decision at the finding's
  val threshold (`thresholds`: finding -> results.json's threshold record)."""
  if np.ndim(prediction["label"]) == 2:
    return _write_multilabel(workdir, split, prediction, class_names, thresholds or {})
  probabilities = np.asarray(prediction["probabilities"])
  argmax = probabilities.argmax(-1)
  decided = None if threshold is None else (probabilities[:, 1] >= threshold).astype(int)
  digest = split_hash(prediction["index"], prediction["file_name"])
  path = pathlib.Path(workdir) / file_name(split)
  tmp = path.with_name(path.name + ".tmp")
  with open(tmp, "w", newline="") as file:
    writer = csv.writer(file)
    writer.writerow(columns(class_names, decided is not None))
    for k in range(len(probabilities)):
      label = int(prediction["label"][k])
      writer.writerow([int(prediction["index"][k]), prediction["file_name"][k],
                       prediction["patient_id"][k], label, class_names[label],
                       *(f"{p:.9g}" for p in probabilities[k]), int(argmax[k]),
                       *([int(decided[k])] if decided is not None else []), digest])
  tmp.replace(path)
  return {"file": path.name, "split_hash": digest, "rows": int(len(probabilities))}


def _write_multilabel(workdir, split: str, prediction: dict, names, thresholds: dict) -> dict:
  probabilities = np.asarray(prediction["probabilities"])
  labels = np.asarray(prediction["label"])
  cut = np.array([thresholds.get(name, {}).get("value", 0.5) for name in names])
  decided = (probabilities >= cut).astype(int)
  digest = split_hash(prediction["index"], prediction["file_name"])
  path = pathlib.Path(workdir) / file_name(split)
  tmp = path.with_name(path.name + ".tmp")
  with open(tmp, "w", newline="") as file:
    writer = csv.writer(file)
    writer.writerow(multilabel_columns(names))
    for k in range(len(probabilities)):
      writer.writerow([int(prediction["index"][k]), prediction["file_name"][k],
                       prediction["patient_id"][k],
                       *(int(y) if y >= 0 else "" for y in labels[k]),
                       *(f"{p:.9g}" for p in probabilities[k]), *decided[k], digest])
  tmp.replace(path)
  return {"file": path.name, "split_hash": digest, "rows": int(len(probabilities))}
