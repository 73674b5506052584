"""python -m jaxray.compare RUN_DIR RUN_DIR ... [--out=DIR] [--sort_by=accuracy] [--decision=argmax]

Is one run better than another, or did it meet a luckier test set? Each run's own intervals
(results.json) answer the wrong question: two runs scored on the same test images err on many of
the same images, so their intervals overlap where a paired comparison finds a clear difference,
and images of one patient are not independent evidence. This command compares finished runs on
their shared test set from the predictions each saved (predictions_test.csv), without a model:
every metric with a bootstrap interval that resamples patients where patient ids are known, and
for every pair of runs the difference of each metric with a paired bootstrap interval, McNemar's
exact test on the decisions and DeLong's test on the ROC AUCs (binary tasks), Holm-corrected over
the pairs when there are more than two runs. Runs of one experiment (seeds) are also summarised
by their mean, standard deviation and range: the spread a new seed alone brings. Decisions are
each run's own rule (its val threshold where it chose one, else argmax); --decision=argmax puts
every run at argmax (0.5 per finding for multi-label runs), to test a claim a paper made on
argmax figures.

Runs tested on different test sets (their split hashes differ) are refused: their numbers cannot
be paired. Writes Markdown to stdout, and with --out comparison.md, comparison.json (every
number) and forest.png (the paired differences with their intervals).
"""

import dataclasses
import functools
import itertools
import json
import math
import pathlib
from typing import Optional, Sequence

import numpy as np
import pandas as pd
from absl import app, flags
from absl import logging as absl_logging

from jaxray import cli
from jaxray.rundir import results as results_lib
from jaxray.evaluate import paired

flags.DEFINE_string("out", None, "Also write comparison.md, comparison.json and forest.png into "
                    "this folder (created if needed; those three files are replaced).")
flags.DEFINE_string("sort_by", "accuracy", "Order the runs' table by this metric, highest first: "
                    "accuracy, sensitivity, specificity, f1 or roc_auc (binary tasks); accuracy or "
                    "macro_f1 (multi-class).")
flags.DEFINE_integer("bootstrap_samples", 1000, "Bootstrap resamples of the test set for every "
                     "interval.")
flags.DEFINE_integer("seed", 0, "Seed of the bootstrap resamples.")
flags.DEFINE_string("pool", None, "Pool this split's predictions over the runs instead of pairing "
                    "them: the out-of-fold figures of a cross-validation (--pool=val over the "
                    "folds' runs, whose val parts are disjoint), with intervals.")
flags.DEFINE_string("split", "test", "Which saved predictions to compare: test, or an extra test "
                    "set as extra_NAME (dataset.extra_tests).")
flags.DEFINE_enum("decision", "own", ["own", "argmax"], "Which decisions the accuracy, "
                  "sensitivity, specificity, F1 and McNemar's test use: each run's own rule (its "
                  "val threshold where it chose one, else argmax), or argmax for every run (0.5 "
                  "per finding for multi-label runs), as a paper that reports argmax figures "
                  "did.")
FLAGS = flags.FLAGS

PREDICTIONS = "predictions_test.csv"
_STRING_COLUMNS = ("file_name", "patient_id", "label_name", "split_hash")
_LABELS = {"accuracy": "accuracy", "sensitivity": "sensitivity", "specificity": "specificity",
           "f1": "F1", "roc_auc": "ROC AUC", "macro_f1": "macro F1",
           "macro_roc_auc": "macro AUROC"}


@dataclasses.dataclass
class Run:
  """One finished run's test predictions, sorted by example index, and its results.json."""
  label: str
  path: pathlib.Path
  results: dict
  class_names: list[str]
  split_hash: str
  index: np.ndarray
  labels: np.ndarray
  probabilities: np.ndarray
  decisions: np.ndarray
  patient_ids: np.ndarray
  decision_rule: str
  file_names: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, str))

  @property
  def experiment(self) -> Optional[str]:
    return self.results.get("experiment")


def run_labels(paths: Sequence) -> list[str]:
  """Each run's folder name; where two share it, parent/name (the whole path if that repeats)."""
  paths = [pathlib.Path(p).expanduser().resolve() for p in paths]
  names = [p.name for p in paths]
  labels = [f"{p.parent.name}/{p.name}" if names.count(p.name) > 1 else p.name for p in paths]
  return [str(p) if labels.count(label) > 1 else label for p, label in zip(paths, labels)]


def _decision_rule(results: dict, thresholded: bool) -> str:
  record = results.get("threshold") or {}
  if not thresholded or record.get("value") is None:
    return "argmax"
  return f"{record.get('rule', 'val')} threshold {record['value']:.4g}"


def _read_predictions(csv_path: pathlib.Path, class_names: Sequence[str],
                      multilabel: bool = False) -> pd.DataFrame:
  frame = pd.read_csv(csv_path, dtype={name: str for name in _STRING_COLUMNS})
  for name in _STRING_COLUMNS:
    if name in frame:
      frame[name] = frame[name].fillna("")
  needed = (["index", "split_hash"]
            + ([f"{kind}_{name}" for kind in ("label", "prob", "pred") for name in class_names]
               if multilabel else ["label", "pred_argmax", *(f"prob_{n}" for n in class_names)]))
  missing = [name for name in needed if name not in frame]
  if missing:
    raise ValueError(f"{csv_path} lacks the column(s) {', '.join(missing)} (class_names in "
                     f"results.json: {list(class_names)}); re-evaluate the run with the current "
                     f"jaxray to write its predictions again.")
  if frame["index"].duplicated().any():
    raise ValueError(f"{csv_path} lists an example index more than once.")
  hashes = frame["split_hash"].unique()
  if len(hashes) != 1:
    raise ValueError(f"{csv_path} mixes test sets: split_hash takes the values "
                     f"{', '.join(map(str, hashes))}.")
  return frame.sort_values("index", kind="stable").reset_index(drop=True)


def load_run(path, label: Optional[str] = None, split: str = "test",
             argmax: bool = False) -> Run:
  """A run folder's results.json and test predictions, or an error saying what is missing."""
  path = pathlib.Path(path).expanduser()
  if not path.is_dir():
    raise FileNotFoundError(f"{path} is not a folder: name the folder of a finished run (its "
                            f"--workdir).")
  results_path = path / results_lib.FILE
  results = results_lib.read(path)
  results_lib.require_predictions(results, path)
  if split not in results["predictions"]:
    raise ValueError(f"{path} saved no predictions of {split!r}; it has: "
                     f"{', '.join(results['predictions'])}.")
  csv_path = path / (results_lib.predictions_file(results, split) or PREDICTIONS)
  record = results["predictions"][split]
  if not csv_path.is_file():
    raise FileNotFoundError(f"{csv_path} does not exist: compare reads the test predictions a "
                            f"run saves, and the run's results.json names this file.")
  class_names = list(results["class_names"])
  multilabel = "thresholds" in results  # a multi-label run: a threshold per finding
  frame = _read_predictions(csv_path, class_names, multilabel)
  split_hash = str(frame["split_hash"].iloc[0])
  if record.get("split_hash") not in (None, split_hash):
    raise ValueError(f"{results_path} names test split {record['split_hash']} but {csv_path} "
                     f"holds split {split_hash}: the two files come from different evaluations.")
  if multilabel:  # labels (N, K): 1, 0, -1 where the file leaves it empty (unknown)
    probabilities = frame[[f"prob_{n}" for n in class_names]].to_numpy(np.float64)
    # A sigmoid's own decision, the multi-label counterpart of argmax, is 0.5 per finding.
    decisions = ((probabilities >= 0.5).astype(np.int64) if argmax
                 else frame[[f"pred_{n}" for n in class_names]].to_numpy(np.int64))
    return Run(
        label=label or run_labels([path])[0], path=path, results=results,
        class_names=class_names, split_hash=split_hash,
        index=frame["index"].to_numpy(np.int64),
        labels=frame[[f"label_{n}" for n in class_names]].fillna(-1).to_numpy(np.int64),
        probabilities=probabilities, decisions=decisions,
        patient_ids=(frame["patient_id"].to_numpy(str) if "patient_id" in frame
                     else np.full(len(frame), "")),
        decision_rule="0.5 per finding" if argmax else "val threshold per finding",
        file_names=(frame["file_name"].to_numpy(str) if "file_name" in frame
                    else frame["index"].to_numpy(str)))
  thresholded = "pred_threshold" in frame and not argmax
  return Run(
      label=label or run_labels([path])[0], path=path, results=results,
      class_names=class_names, split_hash=split_hash,
      index=frame["index"].to_numpy(np.int64), labels=frame["label"].to_numpy(np.int64),
      probabilities=frame[[f"prob_{name}" for name in class_names]].to_numpy(np.float64),
      decisions=frame["pred_threshold" if thresholded else "pred_argmax"].to_numpy(np.int64),
      patient_ids=(frame["patient_id"].to_numpy(str) if "patient_id" in frame
                   else np.full(len(frame), "")),
      decision_rule=_decision_rule(results, thresholded),
      file_names=(frame["file_name"].to_numpy(str) if "file_name" in frame
                  else frame["index"].to_numpy(str)))


def check_same_test_set(runs: Sequence[Run]) -> None:
  """A ValueError naming the runs unless all hold the same examples, labels and classes."""
  if len({run.split_hash for run in runs}) > 1:
    listing = "; ".join(f"{run.label}: {run.split_hash}" for run in runs)
    raise ValueError(f"these runs were tested on different test sets (their split_hash "
                     f"differs), so they cannot be compared pairwise: {listing}. Compare runs of "
                     f"one test split only.")
  first = runs[0]
  for run in runs[1:]:
    if run.class_names != first.class_names:
      raise ValueError(f"{first.label} has classes {first.class_names} but {run.label} has "
                       f"{run.class_names}.")
    if not np.array_equal(run.index, first.index):
      raise ValueError(f"{first.label} and {run.label} share split_hash {first.split_hash} but "
                       f"not the same example indices ({len(first.index)} and {len(run.index)} "
                       f"rows): a predictions file is incomplete.")
    if not np.array_equal(run.labels, first.labels):
      raise ValueError(f"{first.label} and {run.label} give different labels to the same test "
                       f"examples.")


def _patient_groups(runs: Sequence[Run]) -> Optional[np.ndarray]:
  """A patient number per image to resample by, an image without a patient id its own patient;
  None when no image has one."""
  ids = runs[0].patient_ids
  if not np.any(ids != ""):
    return None
  codes = np.unique(ids, return_inverse=True)[1]
  return np.where(ids != "", codes, len(ids) + np.arange(len(ids)))


def _metric_functions(num_classes: int, multilabel: bool = False) -> dict:
  """name -> (which output it reads, metric_fn(labels, outputs))."""
  if multilabel:
    return {"macro_roc_auc": ("scores", paired.macro_roc_auc)}
  if num_classes == 2:
    return {"accuracy": ("decisions", paired.accuracy),
            "sensitivity": ("decisions", paired.sensitivity),
            "specificity": ("decisions", paired.specificity),
            "f1": ("decisions", paired.f1), "roc_auc": ("scores", paired.roc_auc)}
  return {"accuracy": ("decisions", paired.accuracy),
          "macro_f1": ("decisions", functools.partial(paired.macro_f1, num_classes=num_classes))}


def _outputs(run: Run, kind: str) -> np.ndarray:
  if run.labels.ndim == 2:  # multi-label: every finding's probability
    return run.probabilities
  return run.decisions if kind == "decisions" else run.probabilities[:, 1]


def _sort_key(metric: str):
  def key(entry: dict) -> float:
    value = entry["metrics"][metric]
    return -value if value is not None and math.isfinite(value) else math.inf
  return key


def summarize_groups(runs: Sequence[dict]) -> list[dict]:
  """Mean, sd (ddof=1) and range of each metric over the runs sharing an experiment name.

  `runs` are dicts with "label", "experiment" and "metrics" (compare_runs' run entries); an
  experiment run once is left out: one run has no spread.
  """
  by_experiment = {}
  for entry in runs:
    if entry.get("experiment") is not None:
      by_experiment.setdefault(entry["experiment"], []).append(entry)
  groups = []
  for experiment, members in by_experiment.items():
    if len(members) < 2:
      continue
    summary = {}
    for name in members[0]["metrics"]:
      values = np.array([m["metrics"][name] for m in members], dtype=np.float64)
      values = values[np.isfinite(values)]
      summary[name] = {
          "mean": float(np.mean(values)) if len(values) else None,
          "sd": float(np.std(values, ddof=1)) if len(values) > 1 else None,
          "min": float(np.min(values)) if len(values) else None,
          "max": float(np.max(values)) if len(values) else None, "runs": int(len(values))}
    groups.append({"experiment": experiment, "runs": [m["label"] for m in members],
                   "metrics": summary})
  return groups


def _run_entry(run: Run, metrics: dict, labels: np.ndarray, groups, samples: int,
               seed: int) -> dict:
  entry = {"label": run.label, "path": str(run.path), "experiment": run.experiment,
           "selected_epoch": run.results.get("selected_epoch"),
           "decision_rule": run.decision_rule, "metrics": {}, "ci95": {}, "skipped": {}}
  for name, (kind, metric_fn) in metrics.items():
    figures = paired.bootstrap_interval(metric_fn, labels, _outputs(run, kind), groups=groups,
                                        samples=samples, seed=seed)
    entry["metrics"][name] = figures["value"]
    entry["ci95"][name] = figures["ci95"]
    entry["skipped"][name] = figures["skipped"]
  return entry


def pool(runs: Sequence[Run], *, samples: int = 1000, seed: int = 0) -> dict:
  """The runs' predictions of one split pooled into one set: cross-validation's out-of-fold
  figures, each held-out example predicted by the fold that did not train on it. Refused when
  an example (by file name) is in two runs' sets."""
  names = [set(r.file_names) for r in runs]
  overlapping = {n for i, a in enumerate(names) for b in names[i + 1:] for n in a & b}
  if overlapping:
    raise ValueError(f"--pool: {len(overlapping)} example(s) are in more than one run's set "
                     f"(e.g. {sorted(overlapping)[0]}): pool the held-out parts of one "
                     f"cross-validation's folds.")
  labels = np.concatenate([r.labels for r in runs])
  merged = dataclasses.replace(
      runs[0], label="pooled", labels=labels,
      probabilities=np.concatenate([r.probabilities for r in runs]),
      decisions=np.concatenate([r.decisions for r in runs]),
      patient_ids=np.concatenate([r.patient_ids for r in runs]),
      index=np.arange(len(labels)), file_names=np.concatenate([r.file_names for r in runs]))
  metrics = _metric_functions(len(runs[0].class_names), labels.ndim == 2)
  entry = _run_entry(merged, metrics, labels, _patient_groups([merged]), samples, seed)
  entry.update(examples=int(len(labels)), runs=[r.label for r in runs])
  per_run = [_run_entry(r, metrics, r.labels, _patient_groups([r]), samples, seed) for r in runs]
  return {"pooled": entry, "runs": per_run,
          "groups": summarize_groups([dict(e, experiment="folds") for e in per_run])}


def pool_markdown(pooled: dict) -> str:
  entry = pooled["pooled"]
  lines = [f"# Pooled out-of-fold figures ({entry['examples']} examples of "
           f"{len(entry['runs'])} runs)", ""]
  names = list(entry["metrics"])
  lines += _table(["", *names],
                  [["pooled", *(_with_interval(entry["metrics"][n], entry["ci95"][n])
                                for n in names)]]
                  + [[e["label"], *(_with_interval(e["metrics"][n], e["ci95"][n])
                                    for n in names)] for e in pooled["runs"]])
  for group in pooled["groups"]:
    lines += ["", "Over the runs: " + ", ".join(
        f"{n} {group['metrics'][n]['mean']:.3f} ± {group['metrics'][n]['sd']:.3f}"
        for n in names if group["metrics"][n]["sd"] is not None)]
  return "\n".join(lines) + "\n"


def _pair_entry(a: Run, b: Run, metrics: dict, labels: np.ndarray, groups, samples: int,
                seed: int) -> dict:
  differences = {}
  for name, (kind, metric_fn) in metrics.items():
    figures = paired.paired_bootstrap(metric_fn, labels, _outputs(a, kind), _outputs(b, kind),
                                      groups=groups, samples=samples, seed=seed)
    differences[name] = {key: figures[key] for key in
                         ("value_a", "value_b", "difference", "ci95", "skipped")}
  entry = {"a": a.label, "b": b.label, "differences": differences}
  if labels.ndim == 2:
    entry["findings"] = _finding_tests(a, b, labels)
    return entry
  entry["mcnemar"] = paired.mcnemar(a.decisions == labels, b.decisions == labels)
  if len(a.class_names) == 2:
    try:
      entry["delong"] = paired.delong(labels, _outputs(a, "scores"), _outputs(b, "scores"))
    except ValueError as error:
      entry["delong"] = {"p_value": None, "reason": str(error)}
  return entry


def _finding_tests(a: Run, b: Run, labels: np.ndarray) -> dict:
  """Per finding, DeLong's test of the two runs' AUROCs on the images where its label is
  known, with Holm's adjustment over the findings tested."""
  tests = {}
  for k, name in enumerate(a.class_names):
    known = labels[:, k] >= 0
    try:
      tests[name] = paired.delong(labels[known, k], a.probabilities[known, k],
                                  b.probabilities[known, k])
    except ValueError as error:
      tests[name] = {"p_value": None, "reason": str(error)}
  tested = [t for t in tests.values() if t["p_value"] is not None]
  for t, p in zip(tested, paired.holm([t["p_value"] for t in tested])):
    t["p_holm"] = p
  return tests


def compare_runs(runs: Sequence[Run], *, samples: int = 1000, seed: int = 0,
                 sort_by: str = "accuracy") -> dict:
  """Every figure of the comparison: per run, per pair, per group of runs of one experiment.

  All intervals come from the same `samples` resamples of `seed` (patients where the runs'
  predictions carry patient ids, else images), so they are comparable with one another.
  """
  if len(runs) < 2:
    raise ValueError(f"compare needs at least two runs, got {len(runs)}.")
  check_same_test_set(runs)
  first = runs[0]
  num_classes = len(first.class_names)
  multilabel = first.labels.ndim == 2
  metrics = _metric_functions(num_classes, multilabel)
  if multilabel and sort_by == "accuracy":  # the default: a multi-label run ranks by AUROC
    sort_by = "macro_roc_auc"
  if sort_by not in metrics:
    raise ValueError(f"--sort_by={sort_by} is not a metric of this {num_classes}-class task; use "
                     f"one of {', '.join(metrics)}.")
  labels, groups = first.labels, _patient_groups(runs)
  entries = [_run_entry(run, metrics, labels, groups, samples, seed) for run in runs]
  pairs = [_pair_entry(a, b, metrics, labels, groups, samples, seed)
           for a, b in itertools.combinations(runs, 2)]
  if len(pairs) > 1:
    for test in ("mcnemar", "delong"):
      tested = [pair[test] for pair in pairs if test in pair]
      adjusted = paired.holm([np.nan if t["p_value"] is None else t["p_value"] for t in tested])
      for t, p in zip(tested, adjusted):
        t["p_holm"] = p
  notes = []
  if multilabel:
    notes.append(f"{num_classes} findings: pairs are compared on the macro AUROC (paired "
                 f"bootstrap) and per finding by DeLong's test on its known labels, Holm-adjusted "
                 f"over the findings; McNemar's test needs one decision per image and is not run.")
  elif num_classes > 2:
    notes.append(f"{num_classes} classes: pairs are compared on accuracy and macro F1 and by "
                 f"McNemar's test on correctness; DeLong's test compares the ROC AUCs of two "
                 f"classes and is not run.")
  return {
      "task": "multi-label" if multilabel else "binary" if num_classes == 2 else "multi-class",
      "class_names": first.class_names,
      "positive_class": first.class_names[1] if num_classes == 2 and not multilabel else None,
      "split_hash": first.split_hash, "num_examples": int(len(labels)),
      "num_patients": None if groups is None else int(len(np.unique(groups))),
      "resampling": "images" if groups is None else "patients",
      "bootstrap_samples": samples, "seed": seed, "sort_by": sort_by,
      "runs": sorted(entries, key=_sort_key(sort_by)),
      "pairs": pairs, "groups": summarize_groups(entries), "notes": notes,
  }


def _number(value, signed: bool = False) -> str:
  if value is None or not math.isfinite(value):
    return "—"
  return f"{value:+.3f}" if signed else f"{value:.3f}"


def _with_interval(value, interval, signed: bool = False) -> str:
  return (f"{_number(value, signed)} [{_number(interval[0], signed)}, "
          f"{_number(interval[1], signed)}]")


def _p(value) -> str:
  return "—" if value is None or not math.isfinite(value) else f"{value:.3g}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
  return (["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
          + ["| " + " | ".join(row) + " |" for row in rows])


def _runs_table(comparison: dict, names: Sequence[str]) -> list[str]:
  rows = [[entry["label"], str(entry["experiment"] or "—"), str(entry["selected_epoch"]),
           entry["decision_rule"],
           *(_with_interval(entry["metrics"][n], entry["ci95"][n]) for n in names)]
          for entry in comparison["runs"]]
  return _table(["run", "experiment", "epoch", "decision", *(_LABELS[n] for n in names)], rows)


def _finding_tables(comparison: dict) -> list[str]:
  """A multi-label comparison's per-finding DeLong tests, one table per pair."""
  lines = []
  for pair in comparison["pairs"]:
    rows = [[name, _number(t.get("auc_a")), _number(t.get("auc_b")),
             (_with_interval(t["difference"], t["ci95"], signed=True) if "ci95" in t
              else f"— ({t['reason']})"), _p(t["p_value"]), _p(t.get("p_holm"))]
            for name, t in pair["findings"].items()]
    lines += ["", f"Per finding, {pair['a']} (A) − {pair['b']} (B):", "",
              *_table(["finding", "AUROC A", "AUROC B", "DeLong Δ [95% CI]", "DeLong p",
                       "p (Holm, over findings)"], rows)]
  return lines


def _pairs_table(comparison: dict, names: Sequence[str]) -> list[str]:
  if comparison["task"] == "multi-label":
    rows = [[pair["a"], pair["b"], *(_with_interval(
        pair["differences"][n]["difference"], pair["differences"][n]["ci95"], signed=True)
        for n in names)] for pair in comparison["pairs"]]
    return (_table(["A", "B", *(f"Δ {_LABELS[n]}" for n in names)], rows)
            + _finding_tables(comparison))
  holm = len(comparison["pairs"]) > 1
  binary = comparison["task"] == "binary"
  header = ["A", "B", *(f"Δ {_LABELS[n]}" for n in names), "discordant (A only / B only right)",
            "McNemar p"] + (["McNemar p (Holm)"] if holm else [])
  if binary:
    header += ["DeLong Δ AUC [95% CI]", "DeLong p"] + (["DeLong p (Holm)"] if holm else [])
  rows = []
  for pair in comparison["pairs"]:
    mcnemar = pair["mcnemar"]
    row = [pair["a"], pair["b"],
           *(_with_interval(pair["differences"][n]["difference"], pair["differences"][n]["ci95"],
                            signed=True) for n in names),
           f"{mcnemar['b']} / {mcnemar['c']}", _p(mcnemar["p_value"])]
    row += [_p(mcnemar["p_holm"])] if holm else []
    if binary:
      delong = pair["delong"]
      row.append(_with_interval(delong["difference"], delong["ci95"], signed=True)
                 if "ci95" in delong else f"— ({delong['reason']})")
      row += [_p(delong["p_value"])] + ([_p(delong["p_holm"])] if holm else [])
    rows.append(row)
  return _table(header, rows)


def _groups_table(comparison: dict, names: Sequence[str]) -> list[str]:
  def cell(figures: dict) -> str:
    if figures["mean"] is None:
      return "—"
    return (f"{_number(figures['mean'])} ± {_number(figures['sd'])} "
            f"[{_number(figures['min'])}, {_number(figures['max'])}]")
  rows = [[group["experiment"], f"{len(group['runs'])}: {', '.join(group['runs'])}",
           *(cell(group["metrics"][n]) for n in names)] for group in comparison["groups"]]
  return _table(["experiment", "runs", *(_LABELS[n] for n in names)], rows)


def _skipped_lines(comparison: dict) -> list[str]:
  samples = comparison["bootstrap_samples"]
  lines = [f"- {entry['label']}, {_LABELS[name]}: {count} of {samples} resamples left it "
           f"undefined (one class only) and were skipped." for entry in comparison["runs"]
           for name, count in entry["skipped"].items() if count]
  lines += [f"- {pair['a']} − {pair['b']}, Δ {_LABELS[name]}: {figures['skipped']} of {samples} "
            f"resamples skipped (undefined)." for pair in comparison["pairs"]
            for name, figures in pair["differences"].items() if figures["skipped"]]
  return lines


def to_markdown(comparison: dict) -> str:
  """The comparison as Markdown: runs, pairs, groups of runs of one experiment, and notes."""
  names = list(comparison["runs"][0]["metrics"])
  patients = (f" of {comparison['num_patients']} patients" if comparison["num_patients"]
              else "")
  classes = ", ".join(comparison["class_names"])
  positive = (f" (positive: {comparison['positive_class']})" if comparison["positive_class"]
              else "")
  rules = {run["decision_rule"] for run in comparison["runs"]}
  shared_rule = rules.pop() if len(rules) == 1 else None
  decisions = (f"{shared_rule} for every run" if shared_rule in ("argmax", "0.5 per finding")
               else "each run's own rule")
  lines = [
      f"# Comparison of {len(comparison['runs'])} runs",
      "",
      f"Test set: {comparison['num_examples']} images{patients} (split "
      f"{comparison['split_hash']}); classes {classes}{positive}. Intervals: 95% percentile "
      f"bootstrap, {comparison['bootstrap_samples']} resamples of {comparison['resampling']}, "
      f"seed {comparison['seed']}. Decisions: {decisions}.",
      "",
      f"## Runs, by {_LABELS[comparison['sort_by']]}",
      "",
      *_runs_table(comparison, names),
      "",
      "## Pairs: A − B",
      "",
      "Δ: the difference on the same test images, with its paired bootstrap interval."
      + (" McNemar: exact test on the images where exactly one of the two decides right."
         if comparison["task"] != "multi-label" else "")
      + (" DeLong: test of the ROC AUC difference (it treats images as independent)."
         if comparison["task"] == "binary" else "")
      + (" Holm: adjusted over all pairs, separately per test." if len(comparison["pairs"]) > 1
         else ""),
      "",
      *_pairs_table(comparison, names),
  ]
  if comparison["groups"]:
    lines += ["", "## Groups of runs (same experiment): seed-to-seed spread", "",
              "mean ± sd (ddof=1) [min, max] over the runs of each experiment.", "",
              *_groups_table(comparison, names)]
  notes = [f"- {note}" for note in comparison["notes"]] + _skipped_lines(comparison)
  if notes:
    lines += ["", "## Notes", "", *notes]
  return "\n".join(lines) + "\n"


def forest_plot(comparison: dict, path) -> None:
  """One row per pair and metric: the paired difference and its interval, a line at zero."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  rows = [(f"{pair['a']} − {pair['b']}: {_LABELS[name]}", figures["difference"], figures["ci95"])
          for pair in comparison["pairs"] for name, figures in pair["differences"].items()]
  fig, ax = plt.subplots(figsize=(8, 0.32 * len(rows) + 1.4))
  for y, (_, difference, (low, high)) in enumerate(rows):
    if difference is not None and math.isfinite(difference):
      ax.plot([low, high], [y, y], color="tab:blue", linewidth=1.6)
      ax.plot(difference, y, "o", color="tab:blue")
  ax.axvline(0.0, color="black", linewidth=0.8)
  ax.set_yticks(range(len(rows)), [label for label, _, _ in rows], fontsize=8)
  ax.set_ylim(len(rows) - 0.5, -0.5)
  ax.set_xlabel(f"difference A − B, 95% paired bootstrap interval "
                f"({comparison['resampling']} resampled)")
  ax.grid(axis="x", alpha=0.3)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def _json_ready(value):
  """`value` with non-finite floats as null: comparison.json stays strict JSON."""
  if isinstance(value, dict):
    return {key: _json_ready(item) for key, item in value.items()}
  if isinstance(value, (list, tuple)):
    return [_json_ready(item) for item in value]
  if isinstance(value, float) and not math.isfinite(value):
    return None
  return value


def write(comparison: dict, markdown: str, folder: pathlib.Path) -> list[pathlib.Path]:
  """comparison.md, comparison.json and forest.png in `folder`."""
  folder.mkdir(parents=True, exist_ok=True)
  paths = [folder / "comparison.md", folder / "comparison.json", folder / "forest.png"]
  paths[0].write_text(markdown)
  paths[1].write_text(json.dumps(_json_ready(comparison), indent=2, allow_nan=False) + "\n")
  forest_plot(comparison, paths[2])
  return paths


def main(argv):
  paths = argv[1:]
  if not FLAGS["verbosity"].present:
    absl_logging.set_verbosity(absl_logging.WARNING)
  if len(paths) < 2:
    cli.fail("name at least two run folders after the flags, e.g. "
             "python -m jaxray.compare runs/resnet18_seed0 runs/resnet18_seed1")
  if FLAGS.bootstrap_samples < 1:
    cli.fail(f"--bootstrap_samples must be at least 1, got {FLAGS.bootstrap_samples}")
  try:
    if FLAGS.pool:
      runs = [load_run(path, label, FLAGS.pool) for path, label in zip(paths, run_labels(paths))]
      pooled = pool(runs, samples=FLAGS.bootstrap_samples, seed=FLAGS.seed)
      print(pool_markdown(pooled), end="")
      if FLAGS.out:
        folder = pathlib.Path(FLAGS.out).expanduser()
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "pooled.md").write_text(pool_markdown(pooled))
        (folder / "pooled.json").write_text(json.dumps(_json_ready(pooled), indent=2))
      return
    runs = [load_run(path, label, FLAGS.split, argmax=FLAGS.decision == "argmax")
            for path, label in zip(paths, run_labels(paths))]
    comparison = compare_runs(runs, samples=FLAGS.bootstrap_samples, seed=FLAGS.seed,
                              sort_by=FLAGS.sort_by)
  except (ValueError, FileNotFoundError) as error:
    cli.fail(error)
  markdown = to_markdown(comparison)
  print(markdown, end="")
  if FLAGS.out:
    written = write(comparison, markdown, pathlib.Path(FLAGS.out).expanduser())
    print(f"\nwritten: {', '.join(map(str, written))}")


def run():
  app.run(main)


if __name__ == "__main__":
  run()
