"""Which examples train, which select the checkpoint and which are reported: the run's splits.

By default each role reads the prepared split the config names. Kaggle's Kermany validation split
holds 16 images, so the checkpoint it selects is close to a coin toss between epochs; with
`dataset.val_from_train.fraction` > 0 the validation split is instead a stratified share of the
training split's patients, carved when the prepared data is loaded (nothing is prepared again).
Chest X-rays of one patient look alike, so the split is by patient: an image whose patient also
trains would make validation accuracy measure recall of that patient, not generalisation.
"""

from typing import Any, Mapping, Sequence

import ml_collections
import numpy as np
from sklearn import model_selection

FRACTION_FIELD = "dataset.val_from_train.fraction"


class Subset:
  """A random-access source restricted to `indices`, in their order."""

  def __init__(self, source, indices):
    self.source, self.indices = source, np.asarray(indices)

  def __len__(self):
    return len(self.indices)

  def __getitem__(self, i):
    return self.source[int(self.indices[i])]


def check_fraction(fraction) -> None:
  """A clear error, naming the config field, for a fraction that cannot carve a split."""
  if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not (
      0.0 <= fraction < 1.0):
    raise ValueError(f"{FRACTION_FIELD} must be a number in [0, 1): 0 validates on the "
                     f"dataset's own val split, 0.1 on 10% of the training patients; got "
                     f"{fraction!r}.")


def patient_split(patient_ids: Sequence[str], labels: np.ndarray, fraction: float,
                  seed: int) -> tuple[np.ndarray, np.ndarray]:
  """(train indices, val indices), sorted: `fraction` of the patients validate, by class.

  Every image of a patient lands on the side of its patient, including a patient whose images
  carry different labels. Each patient is stratified by its most frequent label (the smallest
  on a tie), and scikit-learn's `StratifiedShuffleSplit` draws ceil(fraction x patients) of them
  with the class proportions of the patients, to within one patient per class.

  Why this and not another scikit-learn splitter: `StratifiedGroupKFold` only yields 1/k of the
  patients (0.3 would become 1/3), and `GroupShuffleSplit` ignores the class. Shuffling patients
  rather than images makes the fraction one of patients; the share of images follows it as
  closely as patients' image counts allow. Patients are ordered by id before the draw, so the
  result depends on the seed and on which (patient, label) pairs the split holds, not on the
  order of its examples.
  """
  check_fraction(fraction)
  labels = np.asarray(labels, dtype=np.int64)
  if len(patient_ids) != len(labels):
    raise ValueError(f"{len(patient_ids)} patient ids for {len(labels)} labels.")
  everything = np.arange(len(labels))
  if fraction == 0 or not len(labels):
    return everything, everything[:0]
  patients, patient_of = np.unique(np.asarray(patient_ids, dtype=str), return_inverse=True)
  counts = np.zeros((len(patients), labels.max() + 1), np.int64)
  np.add.at(counts, (patient_of, labels), 1)
  stratum = counts.argmax(axis=1)
  splitter = model_selection.StratifiedShuffleSplit(n_splits=1, test_size=fraction,
                                                    random_state=seed)
  try:
    _, val_patients = next(splitter.split(np.zeros(len(patients)), stratum))
  except ValueError as error:
    raise ValueError(
        f"{FRACTION_FIELD}={fraction}: cannot carve a class-stratified validation split from "
        f"{len(patients)} patients in {len(np.unique(stratum))} classes ({error})") from None
  is_val = np.isin(patient_of, val_patients)
  return everything[~is_val], everything[is_val]


def _text(value) -> str:
  return value.decode() if isinstance(value, bytes) else str(value)


def fold_split(patient_ids: Sequence[str], labels: np.ndarray, folds: int, fold: int,
               seed: int) -> tuple[np.ndarray, np.ndarray]:
  """(train indices, val indices), sorted: fold `fold` of a `folds`-fold split by patient.

  scikit-learn's `StratifiedGroupKFold`: no patient in two folds, each fold's classes as close
  to the whole's as whole patients allow; shuffled with `seed`, so the folds are a function of
  (seed, the examples' patients and labels)."""
  labels = np.asarray(labels, dtype=np.int64)
  splitter = model_selection.StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
  try:
    train, val = list(splitter.split(np.zeros(len(labels)), labels,
                                     np.asarray(patient_ids, str)))[fold]
  except ValueError as error:
    raise ValueError(f"dataset.cross_validation: cannot cut {len(set(patient_ids))} patients "
                     f"into {folds} folds ({error})") from None
  return np.sort(train), np.sort(val)


def read_patients(source) -> tuple[list[str], np.ndarray]:
  """(patient id, label) of every example of `source`, in index order.

  Reads whole examples: images are stored as raw pixels, so an example costs a read, not a
  decode, and TFDS's ArrayRecord source cannot skip a feature's bytes (`SkipDecoding` leaves
  the image undecoded but still read, and saves little).
  """
  examples = [source[i] for i in range(len(source))]
  return ([_text(e["patient_id"]) for e in examples],
          np.array([stratum(e["label"]) for e in examples], np.int64))


def stratum(label) -> int:
  """The class a split is stratified by: the label, or for a multi-label example (a vector of
  1 present / 0 absent / -1 unknown) whether any finding is present. Stratifying by every
  combination of findings would leave most strata with one patient."""
  label = np.asarray(label)
  return int((label == 1).any()) if label.ndim else int(label)


def select(sources: Mapping[str, Any], dataset: ml_collections.ConfigDict
           ) -> tuple[dict, dict]:
  """({role: source} for train, val and test, record) as the config's `dataset` section says.

  The record says how validation was made and how many patients and images each role holds; it
  goes to results.json ("data") and report.md. Val and test patients that also train are
  counted, not removed: those splits are the dataset's, and the counts say how far to trust
  them (a carved val shares none by construction).
  """
  carve = dataset.val_from_train
  check_fraction(carve.fraction)
  train, test = sources[dataset.train_split], sources[dataset.test_split]
  train_patients, train_labels = read_patients(train)
  cv = dataset.cross_validation
  if carve.fraction > 0 or cv.folds:
    if cv.folds:
      train_indices, val_indices = fold_split(train_patients, train_labels, cv.folds, cv.fold,
                                              cv.seed)
      how = f"fold {cv.fold} of {cv.folds} of train"
    else:
      train_indices, val_indices = patient_split(train_patients, train_labels, carve.fraction,
                                                 carve.seed)
      how = "carved from train"
    val_patients = [train_patients[i] for i in val_indices]
    train_patients = [train_patients[i] for i in train_indices]
    splits = {"train": Subset(train, train_indices), "val": Subset(train, val_indices)}
  else:
    splits = {"train": train, "val": sources[dataset.val_split]}
    val_patients = read_patients(splits["val"])[0]
    how = f"split {dataset.val_split}"
  splits["test"] = test
  test_patients = read_patients(test)[0]
  record = {
      "train_split": dataset.train_split,
      "val": how,
      "fraction": float(carve.fraction),
      "seed": int(carve.seed),
      **({"cv_folds": int(cv.folds), "cv_fold": int(cv.fold), "cv_seed": int(cv.seed)}
         if cv.folds else {}),
      "val_patients": len(set(val_patients)),
      "train_patients": len(set(train_patients)),
      "val_images": len(splits["val"]),
      "train_images": len(splits["train"]),
      "test_images": len(test),
      "overlapping_patients_train_val": len(set(train_patients) & set(val_patients)),
      "overlapping_patients_train_test": len(set(train_patients) & set(test_patients)),
  }
  return splits, record


def describe(record: Mapping[str, Any]) -> str:
  """One sentence on how the validation split was made, for the run's log and report.md."""
  if record["val"].startswith("fold "):
    line = (f"Validation: {record['val']} by patient ({record['val_images']} images of "
            f"{record['val_patients']} patients; seed {record['cv_seed']}), none of them in "
            f"train ({record['train_images']} images of {record['train_patients']} patients).")
  elif record["val"] == "carved from train":
    percent = f"{round(100 * record['fraction'], 6):g}%"
    line = (f"Validation: {record['val_images']} images of {record['val_patients']} patients, "
            f"{percent} of {record['train_split']}'s patients (stratified by class, seed "
            f"{record['seed']}), none of them in train ({record['train_images']} images of "
            f"{record['train_patients']} patients).")
  else:
    line = (f"Validation: the dataset's {record['val'].removeprefix('split ')} split "
            f"({record['val_images']} images of {record['val_patients']} patients).")
  for role in ("val", "test"):
    overlap = record[f"overlapping_patients_train_{role}"]
    if overlap:
      line += f" {overlap} {role} patients also have images in train."
  return line
