"""Class imbalance (class-weighted loss, class-balanced sampling) and the 3-class Kermany view."""

import numpy as np
import pytest
from PIL import Image
from flax import nnx

from jaxray import assembly, config as config_lib, data
from jaxray.data import pipeline
from jaxray import trainer, validation
from jaxray.train import balance, epoch as epoch_lib, steps
from jaxray.train import mesh as mesh_lib


def test_weighted_mean_is_pytorchs_weighted_cross_entropy():
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(6, 3)).astype(np.float32)
  labels = np.array([0, 1, 2, 2, 1, 2])
  weights = (0.5, 2.0, 3.0)
  losses, _ = steps.loss_and_probabilities(logits, labels, "softmax")
  log_softmax = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
  per_example = -log_softmax[np.arange(6), labels]
  w = np.array(weights)[labels]
  expected = (w * per_example).sum() / w.sum()  # torch.nn.CrossEntropyLoss(weight=w)
  assert float(steps.weighted_mean(losses, labels, weights)) == pytest.approx(expected, rel=1e-6)
  assert float(steps.weighted_mean(losses, labels)) == pytest.approx(per_example.mean(), rel=1e-6)


def test_balanced_loss_weights_are_n_over_classes_times_count():
  labels = np.array([0] * 25 + [1] * 75)
  assert balance.loss_weights(labels, 2) == pytest.approx((100 / (2 * 25), 100 / (2 * 75)))
  with pytest.raises(ValueError, match="classes \\[2\\] have no training image"):
    balance.loss_weights(labels, 3)


def _tiny(prepared_dir, *overrides):
  config = config_lib.load("demo")
  return config_lib.apply_overrides(config, [
      "input.image_size=32", "input.batch_size=64", "input.eval_batch_size=128",
      f"dataset.prepared_dir={prepared_dir}", "augment.rotation_degrees=0.0",
      "augment.hflip=False", "augment.brightness=0.0", "augment.contrast=0.0",
      "num_epochs=1", *overrides])


def test_the_train_step_minimises_the_weighted_loss(prepared_dir):
  """The jitted step's loss is the weighted cross-entropy of the model's own logits, by hand."""
  run, state = assembly.assemble(_tiny(prepared_dir, "class_balance.loss_weights='balanced'"))
  labels = balance.read_labels(run.splits["train"])
  counts = np.bincount(labels, minlength=2)
  expected_weights = len(labels) / (2 * counts)
  assert run.balance_record["loss_weights"] == pytest.approx(expected_weights)
  assert run.balance_record["train_class_counts"] == counts.tolist()

  batch = next(iter(epoch_lib.epoch_batches(run, 1)))
  model = nnx.merge(run.graphdef, state.params, state.batch_stats, copy=True)
  logits = np.asarray(model(steps.model_inputs(batch["image"], run.config), train=True))
  log_softmax = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
  per_example = -log_softmax[np.arange(len(logits)), batch["label"]]
  w = expected_weights[batch["label"]]
  by_hand = (w * per_example).sum() / w.sum()
  assert not np.isclose(by_hand, per_example.mean(), rtol=1e-3)  # the weights matter here

  metrics = steps.zero_metrics()
  _, metrics = run.train_step(state, mesh_lib.to_global(batch, run.mesh), metrics)
  loss = float(metrics["loss_sum"]) / int(metrics["count"])
  assert loss == pytest.approx(by_hand, rel=1e-4)


def test_balanced_sampling_draws_each_class_equally_often_over_an_epoch():
  labels = np.array([0] * 900 + [1] * 100)
  order = pipeline.balanced_order(labels, seed=0, epoch=1)
  assert len(order) == len(labels)
  share = np.bincount(labels[order], minlength=2) / len(order)
  assert share == pytest.approx([0.5, 0.5], abs=0.05)  # 1000 draws: 3 sigma is 0.047
  np.testing.assert_array_equal(order, pipeline.balanced_order(labels, seed=0, epoch=1))
  assert not np.array_equal(order, pipeline.balanced_order(labels, seed=0, epoch=2))


def test_an_epoch_of_balanced_batches_through_the_pipeline(prepared_dir):
  config = _tiny(prepared_dir, "class_balance.sampling='balanced'")
  run, _ = assembly.assemble(config)
  labels = balance.read_labels(run.splits["train"])
  seen = np.concatenate([b["label"] for b in epoch_lib.epoch_batches(run, 1)])
  assert len(seen) == len(labels)
  plain_share = np.bincount(labels, minlength=2) / len(labels)
  share = np.bincount(seen, minlength=2) / len(seen)
  assert abs(plain_share[0] - 0.5) > 0.08  # the synthetic split is 60% pneumonia ...
  assert abs(share[0] - 0.5) < 0.06  # ... its balanced epoch half and half (3 sigma: 0.059)
  assert run.balance_record == {"loss_weights": None, "sampling": "balanced",
                                "train_class_counts": np.bincount(labels).tolist()}


def test_bad_class_balance_values_are_refused(prepared_dir):
  with pytest.raises(ValueError, match="class_balance.sampling='oversample': must be one of"):
    validation.validate(_tiny(prepared_dir, "class_balance.sampling=oversample"))


# Kermany file names: the subtype is in the pneumonia images' names.
_FILES = {
    "NORMAL": ["IM-0001-0001.jpeg", "IM-0003-0001.jpeg", "NORMAL2-IM-0007-0001.jpeg"],
    "PNEUMONIA": ["person1_bacteria_1.jpeg", "person1_bacteria_2.jpeg", "person2_virus_3.jpeg",
                  "person3_virus_6.jpeg", "person4_bacteria_9.jpeg"],
}


def _kaggle_folder(root):
  for split in ("train", "val", "test"):
    for label, names in _FILES.items():
      folder = root / "chest_xray" / split / label
      folder.mkdir(parents=True)
      for k, name in enumerate(names):
        pixels = np.full((36, 32), 40 * k, np.uint8)
        pixels[:, :16] += 10  # not constant, and over 32 px: a degenerate image is skipped
        Image.fromarray(pixels).save(folder / name)
  return root


def test_the_3class_config_labels_normal_bacterial_viral_without_preparing_again(tmp_path):
  raw = _kaggle_folder(tmp_path / "raw")
  prepared = tmp_path / "tfds"
  two, info = data.load("chest_xray", str(raw), str(prepared))
  contents = sorted(p.relative_to(prepared) for p in prepared.rglob("*"))
  three, info3 = data.load("chest_xray", str(raw), str(prepared), "3class")
  assert sorted(p.relative_to(prepared) for p in prepared.rglob("*")) == contents  # same files
  assert data.class_names("chest_xray", "3class", info3) == ("normal", "bacteria", "virus")
  assert data.class_names("chest_xray", "", info) == ("NORMAL", "PNEUMONIA")
  by_name = {three["train"][i]["file_name"].decode(): int(three["train"][i]["label"])
             for i in range(len(three["train"]))}
  assert by_name == {"IM-0001-0001.jpeg": 0, "IM-0003-0001.jpeg": 0,
                     "NORMAL2-IM-0007-0001.jpeg": 0, "person1_bacteria_1.jpeg": 1,
                     "person1_bacteria_2.jpeg": 1, "person2_virus_3.jpeg": 2,
                     "person3_virus_6.jpeg": 2, "person4_bacteria_9.jpeg": 1}
  assert sorted(int(two["train"][i]["label"]) for i in range(len(two["train"]))) == [0] * 3 + [1] * 5


def test_the_3class_experiment_loads_three_classes(tmp_path):
  raw = _kaggle_folder(tmp_path / "raw")
  config = config_lib.load("resnet18_3class")
  config_lib.apply_overrides(config, [f"dataset.prepared_dir={tmp_path / 'tfds'}",
                                      "dataset.val_from_train.fraction=0.0"])
  splits, class_names, _ = assembly.load_splits(config, str(raw))
  assert class_names == ("normal", "bacteria", "virus")
  assert sorted(int(splits["test"][i]["label"]) for i in range(len(splits["test"]))) == [
      0, 0, 0, 1, 1, 1, 2, 2]


def test_a_weighted_run_records_its_weights_in_results_and_report(prepared_dir, tmp_path):
  config = _tiny(prepared_dir, "class_balance.loss_weights='balanced'",
                 "evaluation.bootstrap_samples=20", "evaluation.tsne_max_train=32",
                 "evaluation.evaluators=('classification',)")  # the record, not the figures
  results = trainer.train_and_evaluate(config, tmp_path / "run")
  counts = results["class_balance"]["train_class_counts"]
  weights = [sum(counts) / (2 * n) for n in counts]
  assert results["class_balance"]["loss_weights"] == pytest.approx(weights)
  report = (tmp_path / "run" / "report.md").read_text()
  assert (f"Class balance: loss weights NORMAL {weights[0]:.3f}, PNEUMONIA {weights[1]:.3f}; "
          f"training images per class: NORMAL {counts[0]}, PNEUMONIA {counts[1]}.") in report
