"""Multi-label tasks: the masked loss, per-finding figures, thresholds and the predictions file."""

import csv

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn import metrics as skm

from jaxray.evaluate import multilabel
from jaxray.rundir import predictions as predictions_csv
from jaxray.train import balance, steps


def _data(seed=0, n=120, k=3):
  rng = np.random.default_rng(seed)
  labels = rng.integers(0, 2, (n, k))
  labels[rng.random((n, k)) < 0.2] = -1  # unknown
  scores = np.clip(0.35 * labels + rng.random((n, k)) * 0.7, 0, 1)
  return labels, scores


def test_masked_loss_matches_binary_cross_entropy_on_known_labels():
  logits = jnp.array([[2.0, -1.0, 0.5], [-0.3, 0.0, 3.0]])
  labels = jnp.array([[1, 0, -1], [-1, 1, 0]])
  losses, known = steps.multilabel_losses(logits, labels, positive_weights=(2.0, 1.0, 1.0))
  p = 1 / (1 + np.exp(-np.asarray(logits)))
  expected = np.array([[-2 * np.log(p[0, 0]), -np.log(1 - p[0, 1]), 0.0],
                       [0.0, -np.log(p[1, 1]), -np.log(1 - p[1, 2])]])
  np.testing.assert_allclose(np.asarray(losses), expected, rtol=1e-6)
  np.testing.assert_array_equal(np.asarray(known), np.asarray(labels) >= 0)
  np.testing.assert_allclose(np.asarray(steps.per_example(losses, known)),
                             expected.sum(1) / 2, rtol=1e-6)


def test_unknown_labels_carry_no_gradient():
  labels = jnp.array([[1, -1], [0, -1]])
  grad = np.asarray(jax.grad(lambda z: steps.multilabel_losses(z, labels)[0].sum())(
      jnp.ones((2, 2))))
  assert np.all(grad[:, 1] == 0) and np.all(grad[:, 0] != 0)


def test_positive_weights_are_negatives_over_positives_per_finding():
  labels = np.array([[1, 0, 0], [0, 0, -1], [0, 1, -1], [0, 0, -1]])
  assert balance.positive_weights(labels) == (3.0, 3.0, 1.0)  # the third has no positive


def test_rank_auroc_equals_sklearn_on_every_resample():
  labels, scores = _data()
  scores = np.round(scores, 1)  # ties
  index = np.random.default_rng(1).integers(0, len(labels), (20, len(labels)))
  draws = multilabel.auroc_draws(labels[:, 0], scores[:, 0], index)
  for row, draw in zip(index, draws):
    y, s = labels[row, 0], scores[row, 0]
    keep = y >= 0
    assert draw == pytest.approx(skm.roc_auc_score(y[keep], s[keep]), abs=1e-12)


def test_evaluate_per_finding_and_an_undefined_finding():
  labels, scores = _data()
  labels[:, 2] = np.where(labels[:, 2] == 1, 0, labels[:, 2])  # finding 2: no positive
  names = ("Effusion", "Mass", "Hernia")
  thresholds = multilabel.choose_thresholds(labels, scores, names, "youden", 0.95)
  result = multilabel.evaluate(labels, scores, names, bootstrap_samples=200, thresholds=thresholds)
  for k, name in enumerate(names[:2]):
    known = labels[:, k] >= 0
    finding = result["findings"][name]
    assert finding["roc_auc"] == pytest.approx(skm.roc_auc_score(labels[known, k],
                                                                 scores[known, k]))
    assert finding["average_precision"] == pytest.approx(
        skm.average_precision_score(labels[known, k], scores[known, k]))
    low, high = finding["ci95"]["roc_auc"]
    assert low < finding["roc_auc"] < high
    assert finding["unknown"] == int((~known).sum())
    called = scores[known, k] >= thresholds[name]["value"]
    y = labels[known, k]
    assert finding["at_threshold"]["sensitivity"] == pytest.approx(called[y == 1].mean())
    assert finding["at_threshold"]["specificity"] == pytest.approx(1 - called[y == 0].mean())
  hernia = result["findings"]["Hernia"]
  assert hernia["roc_auc"] is None and hernia["undefined"] == "no known positive example"
  assert hernia["positives"] == 0
  assert thresholds["Hernia"] == {"rule": "fixed", "value": 0.5, "reason": thresholds["Hernia"][
      "reason"]} and "0.5" in thresholds["Hernia"]["reason"]
  assert result["metrics"]["macro_roc_auc"] == pytest.approx(
      np.mean([result["findings"][n]["roc_auc"] for n in names[:2]]))
  assert result["metrics"]["findings_with_roc_auc"] == 2


def test_youden_threshold_per_finding_is_chosen_on_known_labels():
  labels = np.array([[1], [1], [0], [0], [-1]])
  scores = np.array([[0.9], [0.7], [0.4], [0.1], [0.95]])
  chosen = multilabel.choose_thresholds(labels, scores, ("A",), "youden", 0.95)["A"]
  assert chosen["value"] == pytest.approx((0.7 + 0.4) / 2) and chosen["val_images"] == 4


def test_multilabel_predictions_csv(tmp_path):
  labels, scores = _data(n=5, k=2)
  labels[0] = [-1, 1]
  prediction = {"label": labels, "probabilities": scores.astype(np.float32),
                "index": np.arange(5), "file_name": np.array([f"{i}.png" for i in range(5)]),
                "patient_id": np.array(["p"] * 5)}
  record = predictions_csv.write(tmp_path, "test", prediction, ("A", "B"),
                                 thresholds={"A": {"value": 0.5}, "B": {"value": 0.3}})
  rows = list(csv.DictReader(open(tmp_path / record["file"])))
  assert list(rows[0]) == ["index", "file_name", "patient_id", "label_A", "label_B", "prob_A",
                           "prob_B", "pred_A", "pred_B", "split_hash"]
  assert rows[0]["label_A"] == "" and rows[0]["label_B"] == "1"
  for row, p in zip(rows, scores.astype(np.float32)):
    assert float(row["prob_A"]) == p[0]
    assert row["pred_B"] == str(int(p[1] >= 0.3))
