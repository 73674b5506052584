"""jaxray.evaluate.paired: DeLong, McNemar, the paired bootstrap and Holm against references."""

import math

import numpy as np
import pytest
from sklearn import metrics as skm

from jaxray.evaluate import paired

# 3 positives and 4 negatives; ties within a class and across the classes.
_LABELS = np.array([1, 0, 0, 1, 0, 1, 0])
_SCORES_A = np.array([0.8, 0.6, 0.4, 0.6, 0.4, 0.6, 0.1])
_SCORES_B = np.array([0.7, 0.5, 0.6, 0.5, 0.2, 0.3, 0.3])


def _psi(x: float, y: float) -> float:
  return 1.0 if x > y else 0.5 if x == y else 0.0


def _components_by_definition(labels, scores):
  """V10 and V01 of DeLong et al. (1988) by their O(m n) definition."""
  positives, negatives = scores[labels == 1], scores[labels == 0]
  v10 = np.array([sum(_psi(x, y) for y in negatives) / len(negatives) for x in positives])
  v01 = np.array([sum(_psi(x, y) for x in positives) / len(positives) for y in negatives])
  return v10, v01


def _covariance_by_definition(components, aucs) -> np.ndarray:
  """S10 or S01 of DeLong et al. (1988): sums over the examples of one class, divided by m - 1."""
  return np.array([[sum((x - auc_x) * (y - auc_y) for x, y in zip(v_x, v_y)) / (len(v_x) - 1)
                    for v_y, auc_y in zip(components, aucs)]
                   for v_x, auc_x in zip(components, aucs)])


def test_structural_components_match_the_pairwise_definition_and_a_hand_count():
  auc, v10, v01 = paired.structural_components(_LABELS, _SCORES_A)
  # 0.8 beats the 4 negatives; each 0.6 beats 3 and ties the negative 0.6.
  np.testing.assert_allclose(v10, [1.0, 7 / 8, 7 / 8], atol=1e-12)
  np.testing.assert_allclose(v01, [2 / 3, 1.0, 1.0, 1.0], atol=1e-12)
  assert auc == pytest.approx(11 / 12, abs=1e-12)
  for scores in (_SCORES_A, _SCORES_B):
    auc, v10, v01 = paired.structural_components(_LABELS, scores)
    reference_v10, reference_v01 = _components_by_definition(_LABELS, scores)
    np.testing.assert_allclose(v10, reference_v10, atol=1e-12)
    np.testing.assert_allclose(v01, reference_v01, atol=1e-12)
    assert auc == pytest.approx(skm.roc_auc_score(_LABELS, scores), abs=1e-12)


def test_delong_variance_of_the_difference_matches_the_pairwise_definition():
  v10_a, v01_a = _components_by_definition(_LABELS, _SCORES_A)
  v10_b, v01_b = _components_by_definition(_LABELS, _SCORES_B)
  auc_a, auc_b = v10_a.mean(), v10_b.mean()
  s10 = _covariance_by_definition([v10_a, v10_b], [auc_a, auc_b])
  s01 = _covariance_by_definition([v01_a, v01_b], [auc_a, auc_b])
  covariance = s10 / 3 + s01 / 4  # m = 3 positives, n = 4 negatives
  variance = covariance[0, 0] + covariance[1, 1] - 2 * covariance[0, 1]

  aucs, fast_covariance = paired.delong_covariance(_LABELS, _SCORES_A, _SCORES_B)
  np.testing.assert_allclose(fast_covariance, covariance, atol=1e-12)
  result = paired.delong(_LABELS, _SCORES_A, _SCORES_B)
  assert result["auc_a"] == pytest.approx(skm.roc_auc_score(_LABELS, _SCORES_A), abs=1e-12)
  assert result["auc_b"] == pytest.approx(skm.roc_auc_score(_LABELS, _SCORES_B), abs=1e-12)
  assert result["difference"] == pytest.approx(auc_a - auc_b, abs=1e-12)
  assert result["variance"] == pytest.approx(variance, abs=1e-12)
  z = (auc_a - auc_b) / math.sqrt(variance)
  assert result["z"] == pytest.approx(z, abs=1e-12)
  assert result["p_value"] == pytest.approx(math.erfc(abs(z) / math.sqrt(2)), abs=1e-12)
  half = 1.959963984540054 * math.sqrt(variance)
  np.testing.assert_allclose(result["ci95"], [auc_a - auc_b - half, auc_a - auc_b + half],
                             atol=1e-12)
  single = paired.delong_variance(_LABELS, _SCORES_A)
  assert single["variance"] == pytest.approx(covariance[0, 0], abs=1e-12)
  np.testing.assert_allclose(aucs, [auc_a, auc_b], atol=1e-12)


def test_delong_of_identical_scores_finds_no_difference():
  result = paired.delong(_LABELS, _SCORES_A, _SCORES_A)
  assert result["difference"] == 0.0 and result["variance"] == 0.0
  assert result["p_value"] == 1.0


@pytest.mark.parametrize("labels, message", [
    (np.array([0, 1, 2, 1, 0, 1, 0]), "binary"),
    (np.ones(7, int), "only"),
    (np.array([1, 0, 0, 0, 0, 0, 0]), "at least two"),
])
def test_delong_refuses_labels_it_cannot_use(labels, message):
  with pytest.raises(ValueError, match=message):
    paired.delong(labels, _SCORES_A, _SCORES_B)


def _correlated_scores(seed: int, noise_b: float, n: int = 400):
  """Two scores sharing a latent variable with the label: correlated, as two models are."""
  rng = np.random.default_rng(seed)
  latent = rng.normal(size=n)
  labels = (latent + rng.normal(size=n) > 0.3).astype(np.int64)
  return (labels, latent + 0.6 * rng.normal(size=n), latent + noise_b * rng.normal(size=n))


@pytest.mark.parametrize("noise_b, significant", [(1.4, True), (0.6, False)])
def test_delong_agrees_with_the_paired_bootstrap(noise_b, significant):
  labels, scores_a, scores_b = _correlated_scores(0, noise_b)
  result = paired.delong(labels, scores_a, scores_b)
  bootstrap = paired.paired_bootstrap(paired.roc_auc, labels, scores_a, scores_b, samples=2000,
                                      seed=1)
  assert bootstrap["skipped"] == 0
  assert bootstrap["difference"] == pytest.approx(result["difference"], abs=1e-12)
  assert result["standard_error"] == pytest.approx(bootstrap["standard_deviation"], rel=0.15)
  low, high = bootstrap["ci95"]
  assert (result["p_value"] < 0.05) == significant
  assert (not low <= 0.0 <= high) == significant


def test_roc_auc_equals_scikit_learn_with_ties():
  rng = np.random.default_rng(3)
  labels = rng.integers(0, 2, 200)
  scores = np.round(rng.random(200) + 0.3 * labels, 1)
  assert paired.roc_auc(labels, scores) == pytest.approx(skm.roc_auc_score(labels, scores),
                                                         abs=1e-12)
  assert math.isnan(paired.roc_auc(np.zeros(5), scores[:5]))


def test_mcnemar_exact_p_of_eight_against_two_discordant():
  # 30 both right, b = 8 only a right, c = 2 only b right, 5 both wrong.
  correct_a = np.array([1] * 30 + [1] * 8 + [0] * 2 + [0] * 5, bool)
  correct_b = np.array([1] * 30 + [0] * 8 + [1] * 2 + [0] * 5, bool)
  result = paired.mcnemar(correct_a, correct_b)
  assert result["table"] == [[30, 8], [2, 5]]
  assert (result["b"], result["c"]) == (8, 2)
  hand = 2 * sum(math.comb(10, k) for k in range(3)) / 2**10
  assert hand == 0.109375
  assert result["p_value"] == pytest.approx(hand, abs=1e-12)
  assert paired.mcnemar(correct_b, correct_a)["p_value"] == pytest.approx(hand, abs=1e-12)
  assert paired.mcnemar(correct_a, correct_a)["p_value"] == 1.0


def test_holm_against_hand_computed_values():
  # Sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1: 0.02, 0.03, 0.06, 0.04 -> running max 0.06.
  assert paired.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
  assert paired.holm([0.5, 0.6]) == pytest.approx([1.0, 1.0])
  adjusted = paired.holm([0.02, float("nan"), 0.04])
  assert adjusted[0] == pytest.approx(0.04) and adjusted[2] == pytest.approx(0.04)
  assert math.isnan(adjusted[1])
  assert paired.holm([]) == []


def test_patient_resamples_keep_every_patient_whole():
  groups = np.array(["p0"] * 3 + ["p1"] + ["p2"] * 2 + ["p3"] * 4)
  sizes = {g: int(np.sum(groups == g)) for g in np.unique(groups)}
  resamples = paired.bootstrap_indices(len(groups), groups, samples=200, seed=0)
  lengths = set()
  for indices in resamples:
    lengths.add(len(indices))
    counts = np.bincount(indices, minlength=len(groups))
    for patient, size in sizes.items():
      members = counts[groups == patient]
      assert np.all(members == members[0])  # every image of a patient, as often as the patient
    assert sum(counts[groups == p][0] for p in sizes) == len(sizes)  # 4 patients drawn
  assert len(lengths) > 1
  images = paired.bootstrap_indices(len(groups), None, samples=5, seed=0)
  assert all(len(indices) == len(groups) for indices in images)


def test_patient_bootstrap_is_wider_when_a_patients_images_err_together():
  # 40 patients of 10 images; whether a run is right is a property of the patient.
  rng = np.random.default_rng(0)
  patients = np.repeat(np.arange(40), 10)
  labels = np.ones(400, np.int64)
  decisions_a = np.repeat(rng.random(40) < 0.8, 10).astype(np.int64)
  decisions_b = np.repeat(rng.random(40) < 0.6, 10).astype(np.int64)
  widths = {}
  for name, groups in (("images", None), ("patients", patients)):
    result = paired.paired_bootstrap(paired.accuracy, labels, decisions_a, decisions_b,
                                     groups=groups, samples=1000, seed=0)
    assert result["difference"] == pytest.approx(decisions_a.mean() - decisions_b.mean())
    widths[name] = result["ci95"][1] - result["ci95"][0]
  assert widths["patients"] > 2.5 * widths["images"]  # about sqrt(10) times


def test_undefined_resamples_are_skipped_and_counted():
  labels = np.array([1] + [0] * 9)
  scores = np.linspace(1, 0, 10)
  result = paired.bootstrap_interval(paired.roc_auc, labels, scores, samples=300, seed=4)
  without_positive = sum(not np.any(labels[i] == 1)
                         for i in paired.bootstrap_indices(10, None, 300, 4))
  assert without_positive > 0
  assert result["skipped"] == without_positive
  assert result["samples"] == 300 - without_positive
  assert result["value"] == 1.0


def test_decision_metrics_equal_scikit_learn():
  rng = np.random.default_rng(5)
  labels, decisions = rng.integers(0, 2, 100), rng.integers(0, 2, 100)
  assert paired.accuracy(labels, decisions) == pytest.approx(skm.accuracy_score(labels, decisions))
  assert paired.sensitivity(labels, decisions) == pytest.approx(
      skm.recall_score(labels, decisions))
  assert paired.specificity(labels, decisions) == pytest.approx(
      skm.recall_score(labels, decisions, pos_label=0))
  assert paired.f1(labels, decisions) == pytest.approx(skm.f1_score(labels, decisions))
  labels, decisions = rng.integers(0, 3, 100), rng.integers(0, 3, 100)
  assert paired.macro_f1(labels, decisions, 3) == pytest.approx(
      skm.f1_score(labels, decisions, average="macro"))
  assert math.isnan(paired.sensitivity(np.zeros(4), np.zeros(4)))
