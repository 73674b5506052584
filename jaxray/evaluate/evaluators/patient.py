"""Patient-level figures: clinicians decide per patient, not per image.

The official Kermany test split has 624 images of 427 patients. A patient's probabilities are the
mean (or, `evaluation.patient.aggregate="max"`, the per-class maximum, renormalised) of their
images'; a patient's label is the largest of their images' labels (for pneumonia vs normal: any
image with pneumonia makes the patient positive). The figures are those of the image level, with
bootstrap intervals over patients, and for binary tasks a threshold chosen on val's patients by
the same rule (`evaluation.threshold`) and applied unchanged to test's.
"""

import numpy as np

from jaxray.evaluate import metrics, threshold

AGGREGATES = ("mean", "max")


def by_patient(prediction: dict, aggregate: str) -> dict:
  """(patient ids, labels, probabilities, images per patient), patients sorted by id."""
  patients, patient_of = np.unique(np.asarray(prediction["patient_id"], str), return_inverse=True)
  probabilities = np.asarray(prediction["probabilities"], np.float64)
  counts = np.bincount(patient_of, minlength=len(patients))
  if aggregate == "mean":
    pooled = np.zeros((len(patients), probabilities.shape[1]))
    np.add.at(pooled, patient_of, probabilities)
    pooled /= counts[:, None]
  else:
    pooled = np.full((len(patients), probabilities.shape[1]), -np.inf)
    np.maximum.at(pooled, patient_of, probabilities)
    pooled /= pooled.sum(axis=1, keepdims=True)
  labels = np.zeros(len(patients), np.int64)
  np.maximum.at(labels, patient_of, np.asarray(prediction["label"], np.int64))
  return {"patient_id": patients, "label": labels, "probabilities": pooled, "images": counts}


def run(context) -> dict:
  evaluation = context.config.evaluation
  aggregate = evaluation.patient.aggregate
  pooled = {split: by_patient(context.predictions[split], aggregate) for split in ("val", "test")}
  results = {"aggregate": aggregate}
  for split, p in pooled.items():
    results[split] = metrics.evaluate(p["label"], p["probabilities"], context.class_names,
                                      bootstrap_samples=evaluation.bootstrap_samples,
                                      seed=context.config.seed)
    results[split]["num_patients"] = int(len(p["label"]))
    results[split]["num_images"] = int(p["images"].sum())
  chosen = threshold.choose(pooled["val"]["label"], pooled["val"]["probabilities"],
                            **evaluation.threshold)
  results["threshold"] = chosen
  if chosen["value"] is not None:
    for split, p in pooled.items():
      results[split]["at_threshold"] = metrics.at_threshold(
          p["label"], p["probabilities"], chosen["value"],
          bootstrap_samples=evaluation.bootstrap_samples, seed=context.config.seed)
  return {"patient_level": results}
