"""The patient-level validation split carved from train (jaxray/data/splits.py), end to end."""

import json

import numpy as np
import pytest

from jaxray import assembly, base_config, config as config_lib
from jaxray.data import splits
from jaxray import trainer


def patients_with_images(counts_by_label: dict[int, int], seed=0):
  """(patient ids, labels): `count` patients of each label, each with 1 to 4 images."""
  rng = np.random.default_rng(seed)
  ids, labels = [], []
  for label, count in counts_by_label.items():
    for p in range(count):
      n = int(rng.integers(1, 5))
      ids += [f"p{label}_{p:03d}"] * n
      labels += [label] * n
  return ids, np.array(labels)


def in_memory(ids, labels):
  return [{"patient_id": p.encode(), "label": int(y), "image": np.zeros((2, 2, 1), np.uint8)}
          for p, y in zip(ids, labels)]


def test_every_image_of_a_patient_lands_on_one_side():
  ids, labels = patients_with_images({0: 40, 1: 60})
  # One patient whose images carry both labels: still one group.
  ids += ["mixed"] * 3
  labels = np.concatenate([labels, [0, 1, 1]])
  for seed in range(20):
    train, val = splits.patient_split(ids, labels, 0.3, seed)
    assert np.array_equal(np.sort(np.concatenate([train, val])), np.arange(len(ids)))
    assert np.all(np.diff(train) > 0) and np.all(np.diff(val) > 0)
    assert not {ids[i] for i in train} & {ids[i] for i in val}


def test_patients_are_drawn_in_the_class_proportions():
  ids, labels = patients_with_images({0: 100, 1: 200})
  for seed in range(10):
    train, val = splits.patient_split(ids, labels, 0.1, seed)
    val_patients = {ids[i] for i in val}
    # ceil(0.1 x 300) = 30 patients: 10 of the 100 of class 0 and 20 of the 200 of class 1.
    assert len(val_patients) == 30
    assert sum(p.startswith("p0_") for p in val_patients) == 10
    assert sum(p.startswith("p1_") for p in val_patients) == 20
    assert len({ids[i] for i in train}) == 270


def test_the_split_is_a_function_of_the_seed_not_of_the_example_order():
  ids, labels = patients_with_images({0: 50, 1: 70})
  first = splits.patient_split(ids, labels, 0.2, seed=0)
  again = splits.patient_split(ids, labels, 0.2, seed=0)
  assert all(np.array_equal(a, b) for a, b in zip(first, again))
  other = splits.patient_split(ids, labels, 0.2, seed=1)
  assert {ids[i] for i in other[1]} != {ids[i] for i in first[1]}
  order = np.random.default_rng(0).permutation(len(ids))
  shuffled = splits.patient_split([ids[i] for i in order], labels[order], 0.2, seed=0)
  assert {ids[order[i]] for i in shuffled[1]} == {ids[i] for i in first[1]}


def test_fraction_zero_keeps_every_split_as_prepared():
  ids, labels = patients_with_images({0: 5, 1: 5})
  train, val = splits.patient_split(ids, labels, 0.0, seed=0)
  assert np.array_equal(train, np.arange(len(ids))) and len(val) == 0
  sources = {"train": in_memory(ids, labels), "val": in_memory(["v1", "v1", "v2"], [0, 0, 1]),
             "test": in_memory(["p0_000", "t"], [0, 1])}
  dataset = base_config.get_config().dataset
  chosen, record = splits.select(sources, dataset)
  assert all(chosen[role] is sources[role] for role in ("train", "val", "test"))
  assert record == {"train_split": "train", "val": "split val", "fraction": 0.0, "seed": 0,
                    "val_patients": 2, "train_patients": 10, "val_images": 3,
                    "train_images": len(ids), "test_images": 2,
                    "overlapping_patients_train_val": 0, "overlapping_patients_train_test": 1}
  assert splits.describe(record) == ("Validation: the dataset's val split (3 images of 2 "
                                     "patients). 1 test patients also have images in train.")


def test_carving_moves_the_validation_patients_out_of_train():
  ids, labels = patients_with_images({0: 20, 1: 30})
  sources = {"train": in_memory(ids, labels), "val": in_memory(["v"], [0]),
             "test": in_memory(["t"], [1])}
  dataset = base_config.get_config().dataset
  dataset.val_from_train.fraction, dataset.val_from_train.seed = 0.2, 7
  chosen, record = splits.select(sources, dataset)
  train_ids = {chosen["train"][i]["patient_id"] for i in range(len(chosen["train"]))}
  val_ids = {chosen["val"][i]["patient_id"] for i in range(len(chosen["val"]))}
  assert len(val_ids) == 10 and len(train_ids) == 40 and not train_ids & val_ids
  assert len(chosen["train"]) + len(chosen["val"]) == len(ids)
  assert chosen["test"] is sources["test"]
  assert record["val"] == "carved from train" and record["val_patients"] == 10
  assert record["val_images"] == len(chosen["val"]) and record["train_patients"] == 40
  assert record["overlapping_patients_train_val"] == 0
  assert "10 patients, 20% of train's patients" in splits.describe(record)


@pytest.mark.parametrize("fraction", [-0.1, 1.0, 1.5, "0.1"])
def test_a_fraction_outside_zero_one_is_refused_naming_the_field(fraction):
  with pytest.raises(ValueError, match=r"dataset\.val_from_train\.fraction"):
    splits.patient_split(["a", "b"], np.array([0, 1]), fraction, seed=0)


def test_a_bad_fraction_is_refused_before_preparing(tmp_path):
  config = config_lib.load("demo")
  config_lib.apply_overrides(config, ["dataset.val_from_train.fraction=1",
                                      f"dataset.prepared_dir={tmp_path / 'prepared'}"])
  with pytest.raises(ValueError, match=r"dataset\.val_from_train\.fraction"):
    trainer.train_and_evaluate(config, tmp_path / "run")
  assert not any(tmp_path.iterdir())


def test_load_splits_carves_validation_from_the_prepared_train_split(prepared_dir):
  config = config_lib.load("demo")
  config_lib.apply_overrides(config, ["dataset.val_from_train.fraction=0.25",
                                      f"dataset.prepared_dir={prepared_dir}"])
  chosen, _, record = assembly.load_splits(config)
  # Synthetic patients are images: ceil(0.25 x 640) = 160 of the 640 training images validate.
  assert (len(chosen["train"]), len(chosen["val"]), len(chosen["test"])) == (480, 160, 256)
  read = {role: splits.read_patients(chosen[role]) for role in ("train", "val")}
  assert not set(read["train"][0]) & set(read["val"][0])
  assert all(p.startswith("phantom0_") for p in read["val"][0])  # from train, not the val split
  # Stratified: each class gives a quarter of its images, to within one.
  for label in (0, 1):
    total = np.sum(read["train"][1] == label) + np.sum(read["val"][1] == label)
    assert np.sum(read["val"][1] == label) in (total // 4, -(-total // 4))
  assert record["val_images"] == 160 and record["train_images"] == 480


def test_a_run_records_the_carved_split_in_results_and_report(prepared_dir, tmp_path):
  config = config_lib.load("demo")
  overrides = ["dataset.val_from_train.fraction=0.2", "num_epochs=1", "input.image_size=32",
               "evaluation.evaluators=('classification', 'threshold')",  # no figures needed
               "input.batch_size=64", "input.eval_batch_size=128",
               f"dataset.prepared_dir={prepared_dir}", "evaluation.bootstrap_samples=20",
               "evaluation.tsne_max_train=64"]
  config_lib.apply_overrides(config, overrides)
  trainer.train_and_evaluate(config, tmp_path, overrides=overrides)
  results = json.loads((tmp_path / "results.json").read_text())
  # ceil(0.2 x 640) = 128 single-image patients validate; 512 train.
  assert results["data"]["val"] == "carved from train"
  assert (results["data"]["val_images"], results["data"]["train_images"]) == (128, 512)
  assert results["data"]["fraction"] == 0.2 and results["data"]["seed"] == 0
  assert results["val"]["num_examples"] == 128
  assert "Validation: 128 images of 128 patients, 20% of train's patients" in (
      tmp_path / "report.md").read_text()
