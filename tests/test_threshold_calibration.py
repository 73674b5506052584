"""The decision threshold chosen on validation, its figures on test, and calibration (ECE)."""

import dataclasses
import json

import numpy as np
import pytest
from PIL import Image
from sklearn import metrics as skm

from jaxray import assembly, config as config_lib, trainer
from jaxray.evaluate import calibration, metrics, threshold

# A val set of 10 images, scores (positive-class probabilities) ascending, 5 positives:
#   score 0.10 0.20 0.30 0.40 0.52 0.60 0.68 0.74 0.86 0.93
#   label    0    0    1    0    0    1    1    0    1    1
# Calling score >= t positive, at each observed score t (tp/5, fp/5, J = tpr - fpr):
#   t=0.93: 1, 0, 0.2   t=0.86: 2, 0, 0.4   t=0.74: 2, 1, 0.2   t=0.68: 3, 1, 0.4
#   t=0.60: 4, 1, 0.6   t=0.52: 4, 2, 0.4   t=0.40: 4, 3, 0.2   t=0.30: 5, 3, 0.4
#   t=0.20: 5, 4, 0.2   t=0.10: 5, 5, 0.0
VAL_SCORES = np.array([0.10, 0.20, 0.30, 0.40, 0.52, 0.60, 0.68, 0.74, 0.86, 0.93])
VAL_LABELS = np.array([0, 0, 1, 0, 0, 1, 1, 0, 1, 1])


def _binary(scores):
  scores = np.asarray(scores, np.float64)
  return np.stack([1 - scores, scores], -1)


def test_youden_threshold_equals_the_hand_computed_one():
  """J peaks at t=0.60 alone; the threshold sits midway to the next lower val score, 0.52."""
  record = threshold.choose(VAL_LABELS, _binary(VAL_SCORES), "youden", 0.95)
  assert record["rule"] == "youden" and record["chosen_on"] == "val"
  assert record["value"] == pytest.approx((0.60 + 0.52) / 2)
  assert record["val_images"] == 10
  assert record["val_sensitivity"] == pytest.approx(4 / 5)  # 0.60, 0.68, 0.86, 0.93
  assert record["val_specificity"] == pytest.approx(4 / 5)  # all but 0.74


@pytest.mark.parametrize("target, lower, upper, sensitivity, specificity", [
    (0.95, 0.20, 0.30, 5 / 5, 2 / 5),  # every positive: down to 0.30, the lowest positive
    (1.00, 0.20, 0.30, 5 / 5, 2 / 5),
    (0.80, 0.52, 0.60, 4 / 5, 4 / 5),  # exactly 4/5 reaches 0.8
    (0.60, 0.60, 0.68, 3 / 5, 4 / 5),
    (0.10, 0.86, 0.93, 1 / 5, 5 / 5),
])
def test_target_sensitivity_threshold_equals_the_hand_computed_one(target, lower, upper,
                                                                   sensitivity, specificity):
  record = threshold.choose(VAL_LABELS, _binary(VAL_SCORES), "target_sensitivity", target)
  assert record["rule"] == "target_sensitivity" and record["target_sensitivity"] == target
  assert record["value"] == pytest.approx((lower + upper) / 2)
  assert record["val_sensitivity"] == pytest.approx(sensitivity)
  assert record["val_specificity"] == pytest.approx(specificity)


def test_threshold_below_the_lowest_val_score_sits_midway_to_zero():
  labels = np.array([1, 0, 1])
  record = threshold.choose(labels, _binary([0.2, 0.5, 0.9]), "target_sensitivity", 1.0)
  assert record["value"] == pytest.approx(0.1)
  assert record["val_sensitivity"] == 1.0 and record["val_specificity"] == 0.0


def test_youden_ties_go_to_the_highest_threshold():
  # J: t=0.7: 1/2 - 0 = 0.5; t=0.5: 1/2 - 1/2 = 0; t=0.3: 1 - 1/2 = 0.5; t=0.1: 0.
  labels = np.array([0, 1, 0, 1])
  record = threshold.choose(labels, _binary([0.1, 0.3, 0.5, 0.7]), "youden", 0.95)
  assert record["value"] == pytest.approx(0.6)  # between 0.5 and 0.7, not between 0.1 and 0.3


def test_decide_at_the_boundary():
  record = {"rule": "youden", "value": 0.56}
  scores = np.array([np.nextafter(0.56, 0.0), 0.56, np.nextafter(0.56, 1.0), 0.0, 1.0])
  np.testing.assert_array_equal(threshold.decide(_binary(scores), record), [0, 1, 1, 0, 1])
  argmax = {"rule": "argmax", "value": None, "reason": "argmax asked"}
  # Argmax: 0.5 against 0.5 is class 0 (the first maximum), as np.argmax and the reports do.
  np.testing.assert_array_equal(threshold.decide(_binary([0.49, 0.5, 0.51]), argmax), [0, 0, 1])
  four = np.array([[0.1, 0.2, 0.3, 0.4], [0.7, 0.1, 0.1, 0.1]])
  np.testing.assert_array_equal(threshold.decide(four, argmax), [3, 0])


def test_a_threshold_on_the_val_scores_reproduces_the_val_operating_point():
  """The chosen value classifies every val image as the chosen ROC point does, on float32
  probabilities as the eval step returns them."""
  rng = np.random.default_rng(3)
  labels = rng.integers(0, 2, 200)
  scores = np.clip(labels * 0.3 + rng.normal(0.35, 0.2, 200), 0, 1).astype(np.float32)
  probabilities = np.stack([1 - scores, scores], -1)
  record = threshold.choose(labels, probabilities, "youden", 0.95)
  fpr, tpr, cuts = skm.roc_curve(labels, scores)
  best = np.argmax(tpr - fpr)
  np.testing.assert_array_equal(threshold.decide(probabilities, record), scores >= cuts[best])
  assert record["val_sensitivity"] == pytest.approx(tpr[best])
  assert record["val_specificity"] == pytest.approx(1 - fpr[best])


def test_multi_class_and_argmax_keep_argmax_with_the_reason():
  probabilities = np.full((8, 4), 0.25)
  labels = np.arange(8) % 4
  assert threshold.choose(labels, probabilities, "youden", 0.95) == {
      "rule": "argmax", "value": None,
      "reason": "multi-class: the class with the highest probability"}
  assert threshold.choose(VAL_LABELS, _binary(VAL_SCORES), "argmax", 0.95) == {
      "rule": "argmax", "value": None, "reason": "argmax asked"}
  with pytest.raises(ValueError, match="two classes"):
    metrics.evaluate(labels, probabilities, "abcd", threshold=0.3)


@pytest.mark.parametrize("labels, scores, reason", [
    ([1, 1, 1], [0.2, 0.6, 0.9], "one class only"),
    ([], [], "empty"),
    ([0, 1], [0.3, np.nan], "not all finite"),
    ([1, 1, 0, 0], [0.1, 0.2, 0.8, 0.9], "no val threshold beats chance"),  # inverted scores
])
def test_a_degenerate_val_split_falls_back_to_argmax(labels, scores, reason):
  record = threshold.choose(np.array(labels, int), _binary(np.reshape(scores, -1)), "youden",
                            0.95)
  assert record["rule"] == "argmax" and record["value"] is None and reason in record["reason"]


@pytest.mark.parametrize("field, rule, target", [
    ("evaluation.threshold.rule", "median", 0.95),
    ("evaluation.threshold.target_sensitivity", "target_sensitivity", 0.0),
    ("evaluation.threshold.target_sensitivity", "youden", 1.5),
])
def test_a_bad_threshold_setting_names_its_field(field, rule, target):
  with pytest.raises(ValueError, match=field.replace(".", r"\.")):
    threshold.choose(VAL_LABELS, _binary(VAL_SCORES), rule, target)


def test_a_bad_rule_stops_the_run_before_anything_is_written(tmp_path):
  config = config_lib.apply_overrides(config_lib.load("demo"),
                                      ["evaluation.threshold.rule=median"])
  with pytest.raises(ValueError, match=r"evaluation\.threshold\.rule='median': must be one of"):
    trainer.train_and_evaluate(config, tmp_path / "run")
  assert not (tmp_path / "run").exists()


def test_figures_at_a_threshold_equal_scikit_learn_on_thresholded_predictions():
  rng = np.random.default_rng(0)
  labels = rng.integers(0, 2, 300)
  scores = np.clip(labels * 0.4 + rng.normal(0.3, 0.25, 300), 0, 1)
  probabilities = _binary(scores)
  t = 0.37
  called = (scores >= t).astype(int)
  figures = metrics.at_threshold(labels, probabilities, t, bootstrap_samples=200, seed=4)
  assert figures["threshold"] == t
  m = figures["metrics"]
  assert m["accuracy"] == pytest.approx(skm.accuracy_score(labels, called))
  assert m["sensitivity"] == pytest.approx(skm.recall_score(labels, called))
  assert m["specificity"] == pytest.approx(skm.recall_score(labels, called, pos_label=0))
  assert m["precision"] == pytest.approx(skm.precision_score(labels, called))
  assert m["f1"] == pytest.approx(skm.f1_score(labels, called))
  assert m["roc_auc"] == pytest.approx(skm.roc_auc_score(labels, scores))
  assert figures["confusion_matrix"] == skm.confusion_matrix(labels, called).tolist()
  assert set(figures["ci95"]) == set(m)
  # No threshold is argmax, today's numbers; a threshold calling the same images positive as
  # argmax gives the same intervals: the resamples are shared.
  argmax = metrics.evaluate(labels, probabilities, "ab", bootstrap_samples=200, seed=4)
  assert argmax["metrics"]["accuracy"] == pytest.approx(
      skm.accuracy_score(labels, probabilities.argmax(-1)))
  same = metrics.at_threshold(labels, probabilities, np.nextafter(0.5, 1), bootstrap_samples=200,
                              seed=4)
  assert np.all(scores != 0.5)
  assert same["metrics"] == argmax["metrics"] and same["ci95"] == argmax["ci95"]
  assert figures["ci95"]["sensitivity"] != argmax["ci95"]["sensitivity"]


def test_ece_of_a_hand_computed_case():
  """Top-label ECE with 4 bins (0, .25], (.25, .5], (.5, .75], (.75, 1], three classes.

    image  probabilities      label  confidence  correct  bin
      1    (0.20, 0.70, 0.10)   1      0.70        1       (.5, .75]
      2    (0.60, 0.30, 0.10)   2      0.60        0       (.5, .75]
      3    (0.10, 0.10, 0.80)   2      0.80        1       (.75, 1]
      4    (0.05, 0.90, 0.05)   0      0.90        0       (.75, 1]
      5    (0.30, 0.30, 0.40)   2      0.40        1       (.25, .5]
      6    (0.25, 0.50, 0.25)   1      0.50        1       (.25, .5]  (right edge: closed)
      7    (0.00, 0.00, 1.00)   2      1.00        1       (.75, 1]

  (.25, .5]: 2 images, accuracy 1,   mean confidence 0.45: 2/7 * 0.55
  (.5, .75]: 2 images, accuracy 1/2, mean confidence 0.65: 2/7 * 0.15
  (.75, 1]:  3 images, accuracy 2/3, mean confidence 0.90: 3/7 * 0.7/3
  ECE = (1.1 + 0.3 + 0.7) / 7 = 0.3
  """
  probabilities = np.array([[0.20, 0.70, 0.10], [0.60, 0.30, 0.10], [0.10, 0.10, 0.80],
                            [0.05, 0.90, 0.05], [0.30, 0.30, 0.40], [0.25, 0.50, 0.25],
                            [0.00, 0.00, 1.00]])
  labels = np.array([1, 2, 2, 0, 2, 1, 2])
  assert calibration.expected_calibration_error(labels, probabilities, bins=4) == \
      pytest.approx(0.3)
  table = calibration.reliability_table(labels, probabilities, bins=4)
  np.testing.assert_array_equal(table["count"], [0, 2, 2, 3])
  np.testing.assert_allclose(table["accuracy"][1:], [1, 0.5, 2 / 3])
  np.testing.assert_allclose(table["confidence"][1:], [0.45, 0.65, 0.9])
  assert np.isnan(table["accuracy"][0])
  # A perfectly confident, always right classifier is perfectly calibrated.
  assert calibration.expected_calibration_error(labels, np.eye(3)[labels], bins=4) == 0.0


def test_bootstrap_ece_is_the_ece_of_each_resample():
  rng = np.random.default_rng(5)
  labels = rng.integers(0, 2, 120)
  probabilities = _binary(np.clip(labels * 0.3 + rng.normal(0.35, 0.2, 120), 0, 1))
  draws = calibration.bootstrap_ece(labels, probabilities, bins=15, samples=30, seed=7)
  index = np.random.default_rng(7).integers(0, 120, (30, 120))  # metrics' resamples
  for row in range(30):
    assert draws[row] == pytest.approx(calibration.expected_calibration_error(
        labels[index[row]], probabilities[index[row]], bins=15))
  summary = calibration.summary(labels, probabilities, bins=15, bootstrap_samples=300, seed=7)
  assert summary["bins"] == 15
  assert summary["ci95"][0] <= summary["ece"] <= summary["ci95"][1]


# The final evaluation on predictions the test sets by hand: what was chosen on which split.

def _prediction(labels, probabilities, features=4):
  labels = np.asarray(labels)
  return {"label": labels, "probabilities": np.asarray(probabilities, np.float32),
          "loss": np.full(len(labels), 0.5, np.float32), "index": np.arange(len(labels)),
          "features": np.random.default_rng(len(labels)).normal(size=(len(labels), features)),
          "file_name": np.array([f"x{i}.png" for i in range(len(labels))], object),
          "patient_id": np.array([f"p{i}" for i in range(len(labels))], object)}


@pytest.fixture(scope="module")
def tiny_run(prepared_dir):
  config = config_lib.apply_overrides(config_lib.load("demo"), [
      "input.image_size=32", f"dataset.prepared_dir={prepared_dir}",
      "evaluation.bootstrap_samples=50", "evaluation.tsne_max_train=16"])
  return assembly.assemble(config)


def _final(monkeypatch, run_and_state, workdir, val, test):
  """The final evaluation of the val, test and t-SNE predictions given."""
  run, state = run_and_state
  train = _prediction(np.arange(16) % len(run.class_names),
                      np.eye(len(run.class_names))[np.arange(16) % len(run.class_names)])
  history = [{"epoch": 1, "train_loss": 0.5, "train_accuracy": 0.5, "val_loss": 0.5,
              "val_accuracy": 0.5, "train_seconds": 1.0, "epoch_seconds": 1.0}]
  by_epoch = [{"first_epoch": 1, "resolved": run.runtime["resolved"]}]
  workdir.mkdir(parents=True, exist_ok=True)
  return trainer.report_predictions(run, state, {"val": val, "test": test, "train_sample": train},
                                    workdir, history, 1, by_epoch)


def test_the_threshold_is_chosen_on_val_only(tiny_run, tmp_path, monkeypatch):
  """Test's own Youden point is t=0.25 (between 0.2 and 0.3); val's is 0.56. The record follows
  val when val changes, and stays when only test changes."""
  test_scores = np.array([0.1, 0.2, 0.3, 0.35, 0.4, 0.45, 0.5, 0.8])
  test_labels = np.array([0, 0, 1, 1, 1, 1, 1, 0])
  assert threshold.choose(test_labels, _binary(test_scores), "youden", 0.95)["value"] == \
      pytest.approx(0.25)
  val = _prediction(VAL_LABELS, _binary(VAL_SCORES))
  results = _final(monkeypatch, tiny_run, tmp_path / "a", val,
                   _prediction(test_labels, _binary(test_scores)))
  assert results["threshold"]["value"] == pytest.approx(0.56, abs=1e-6)
  assert results["threshold"]["val_images"] == 10
  at = results["test"]["at_threshold"]
  assert at["threshold"] == results["threshold"]["value"]
  called = (test_scores >= 0.56).astype(int)  # 0.8 only
  assert at["metrics"]["accuracy"] == pytest.approx(skm.accuracy_score(test_labels, called))
  assert at["confusion_matrix"] == skm.confusion_matrix(test_labels, called).tolist()
  # The headline stays argmax, today's figures.
  assert results["test"]["metrics"]["accuracy"] == pytest.approx(
      skm.accuracy_score(test_labels, (test_scores > 0.5).astype(int)))
  assert results["val"]["at_threshold"]["metrics"]["sensitivity"] == pytest.approx(0.8)

  moved_test = _prediction(test_labels, _binary(np.clip(test_scores + 0.15, 0, 1)))
  again = _final(monkeypatch, tiny_run, tmp_path / "b", val, moved_test)
  assert again["threshold"] == results["threshold"]

  moved_val = _prediction(VAL_LABELS, _binary(VAL_SCORES - 0.05))  # J peaks at 0.55 -> 0.51
  moved = _final(monkeypatch, tiny_run, tmp_path / "c", moved_val,
                 _prediction(test_labels, _binary(test_scores)))
  assert moved["threshold"]["value"] == pytest.approx(0.51, abs=1e-6)

  report = (tmp_path / "a" / "report.md").read_text()
  assert "| metric | this run (argmax) | 95% CI (bootstrap) | at val threshold (t=0.56)" in report
  assert "chosen on the 10 val images by Youden's J" in report
  assert "At the val threshold (t=0.56):" in report
  assert f"| accuracy | {results['test']['metrics']['accuracy']:.3f} |" in report


def test_multi_class_keeps_argmax_and_says_so(tiny_run, tmp_path, monkeypatch):
  run = (dataclasses.replace(tiny_run[0], class_names=("a", "b", "c")), tiny_run[1])
  rng = np.random.default_rng(2)
  labels = np.arange(30) % 3
  logits = np.eye(3)[labels] * 2 + rng.normal(size=(30, 3))
  probabilities = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
  results = _final(monkeypatch, run, tmp_path, _prediction(labels, probabilities),
                   _prediction(labels, probabilities))
  assert results["threshold"] == {"rule": "argmax", "value": None,
                                  "reason": "multi-class: the class with the highest probability"}
  assert "at_threshold" not in results["test"] and "at_threshold" not in results["val"]
  assert results["test"]["calibration"]["ece"] == pytest.approx(
      calibration.expected_calibration_error(labels, probabilities.astype(np.float32), 15))
  report = (tmp_path / "report.md").read_text()
  assert "Every figure is argmax, no threshold: multi-class" in report
  assert "at val threshold" not in report


def test_the_demo_writes_calibration_and_records_threshold_and_ece(prepared_dir, tmp_path):
  config = config_lib.apply_overrides(config_lib.load("demo"), [
      "input.image_size=32", "input.batch_size=64", "input.eval_batch_size=128",
      f"dataset.prepared_dir={prepared_dir}", "evaluation.bootstrap_samples=50",
      "evaluation.tsne_max_train=64", "num_epochs=1"])
  trainer.train_and_evaluate(config, tmp_path)
  with Image.open(tmp_path / "calibration.png") as image:
    assert image.size[0] > 100 and image.size[1] > 100
  results = json.loads((tmp_path / "results.json").read_text())
  chosen = results["threshold"]
  assert chosen["rule"] == "youden" and chosen["chosen_on"] == "val"
  assert chosen["val_images"] == results["val"]["num_examples"]
  assert 0.0 <= chosen["value"] <= 1.0
  for split in ("val", "test"):
    at = results[split]["at_threshold"]
    assert at["threshold"] == chosen["value"]
    assert np.sum(at["confusion_matrix"]) == results[split]["num_examples"]
    assert set(at["ci95"]) == set(at["metrics"]) == set(results[split]["metrics"])
    assert results[split]["calibration"]["bins"] == 15
    low, high = results[split]["calibration"]["ci95"]
    assert 0.0 <= low <= results[split]["calibration"]["ece"] <= high <= 1.0
  report = (tmp_path / "report.md").read_text()
  assert "at val threshold (t=" in report and "Expected calibration error" in report
  assert "![calibration](calibration.png)" in report
