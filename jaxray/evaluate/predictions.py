"""Every example of a source through the jitted eval step, gathered on the host."""

import jax
import numpy as np
from tqdm import tqdm

from jaxray.data import pipeline
from jaxray.train import mesh as mesh_lib


def predict(run, state, source, description="eval", *, with_ids: bool = True) -> dict:
  """Label, probabilities, features, loss and index of every example of `source` under `state`,
  once, in index order (host numpy); with `with_ids`, also each example's file name and patient
  id (empty where the dataset has none), which the saved predictions and the patient-level
  figures need."""
  config = run.config
  batches = pipeline.eval_batches(source, batch_size=run.eval_batch_size,
                                  image_size=config.input.image_size,
                                  num_threads=config.input.num_threads)
  outputs = []
  for batch in tqdm(batches, total=pipeline.num_eval_steps(len(source), run.eval_batch_size),
                    desc=description, leave=False, disable=jax.process_index() != 0):
    outputs.append(mesh_lib.to_host(run.eval_step(state, mesh_lib.to_global(batch, run.mesh))))
  merged = {k: np.concatenate([o[k] for o in outputs]) for k in outputs[0]}
  keep = merged.pop("mask").astype(bool)
  merged = {k: v[keep] for k, v in merged.items()}
  order = np.argsort(merged["index"], kind="stable")
  merged = {k: v[order] for k, v in merged.items()}
  if with_ids:
    examples = [source[int(i)] for i in merged["index"]]
    for key in ("file_name", "patient_id"):
      merged[key] = np.array([_text(e.get(key, "")) for e in examples], dtype=object)
  return merged


def _text(value) -> str:
  return value.decode() if isinstance(value, bytes) else str(value)


def summary(prediction: dict, split: str) -> dict:
  """The per-epoch figures of one split: loss, accuracy, and ROC AUC for two classes (for
  several findings, the macro ROC AUC and the accuracy of known (image, finding) pairs)."""
  from jaxray.evaluate import metrics, multilabel
  if prediction["label"].ndim == 2:  # multi-label: ROC AUC is the macro over findings
    figures = multilabel.epoch_summary(prediction["label"], prediction["probabilities"])
    return {f"{split}_loss": float(prediction["loss"].mean()),
            f"{split}_accuracy": figures["accuracy"], f"{split}_roc_auc": figures["roc_auc"]}
  result = {f"{split}_loss": float(prediction["loss"].mean()),
            f"{split}_accuracy": float((prediction["probabilities"].argmax(-1)
                                        == prediction["label"]).mean())}
  if prediction["probabilities"].shape[1] == 2 and len(np.unique(prediction["label"])) == 2:
    finite = np.isfinite(prediction["probabilities"]).all()  # else the loss check stops the run
    result[f"{split}_roc_auc"] = (metrics.binary_metrics(
        prediction["label"], prediction["probabilities"])["roc_auc"] if finite else float("nan"))
  return result
