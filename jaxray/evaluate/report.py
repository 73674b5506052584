"""report.md: this run's numbers next to the report's, with intervals and the figures."""

import pathlib

from jaxray.data import splits
from jaxray.evaluate.evaluators import shift
from jaxray.rundir import results as results_lib

_ROWS = ("accuracy", "sensitivity", "specificity", "precision", "f1", "roc_auc",
         "macro_precision", "macro_recall", "macro_f1", "roc_auc_ovr")


def _fmt(value) -> str:
  return "—" if value is None else f"{value:.3f}"


def write(path, results: dict, history: list[dict]) -> None:
  """report.md from results.json's content (and metrics.jsonl's epochs): never from the
  evaluators themselves, so a report can always be written again from a run's record."""
  reference = results["reference"]
  lines = [
      f"# {results['experiment']}",
      "",
      (f"Reference (the \"report\" column): {reference['report']}." if reference["report"] else
       "No published figure to set beside this run.") + " Platform: "
      f"{results['platform']['backend']} ({results['platform']['device_kind']} x"
      f"{results['platform']['device_count']}). Epochs trained: {len(history)}; checkpoint "
      f"evaluated: epoch {results['selected_epoch']} (best {results['selection']['metric']}).",
      "",
      _overrides_line(results.get("overrides", ())),
      "",
      *([splits.describe(results["data"]), ""] if results.get("data") else []),
      *_balance_lines(results.get("class_balance"), results["class_names"]),
  ]
  if "findings" in results.get("test", {}):
    lines += _multilabel_lines(results)
  elif "test" in results and "metrics" in results["test"]:
    lines += _test_lines(results, reference)
  if reference.get("notes"):
    lines += ["", f"Report's note: {reference['notes']}"]
  if results.get("extra_tests"):
    lines += _extra_test_lines(results)
  if results.get("shift"):
    lines += _shift_lines(results)
  if "patient_level" in results:
    lines += _patient_lines(results["patient_level"], results["class_names"])
  lines += _other_lines(results)
  lines += ["", "## Per epoch", "",
            "| epoch | train loss | train acc | val loss | val acc | val AUC | test acc | seconds |",
            "|---|---|---|---|---|---|---|---|"]
  for h in history:
    lines.append(f"| {h['epoch']} | {h['train_loss']:.4f} | {h['train_accuracy']:.3f} | "
                 f"{h.get('val_loss', float('nan')):.4f} | {h.get('val_accuracy', float('nan')):.3f} | "
                 f"{_fmt(h.get('val_roc_auc'))} | {_fmt(h.get('test_accuracy'))} | "
                 f"{h['epoch_seconds']:.1f} |")
  if any("test_accuracy" in h for h in history):
    lines += ["", "Test accuracy per epoch is tracked as the report did, never used to choose "
              "the checkpoint."]
  lines += _runtime_lines(results["runtime"])
  lines += _figure_lines(results.get("artifacts"))
  pathlib.Path(path).write_text("\n".join(lines))


def _test_lines(results: dict, reference: dict) -> list[str]:
  """The test table, threshold, calibration, confusion matrices and the last epoch's figures."""
  test, class_names = results["test"], results["class_names"]
  at = results_lib.at_threshold(results)
  lines = ["", f"## Test set ({test['num_examples']} images)", "", *_test_table(test, reference)]
  lines += _threshold_and_calibration_lines(results)
  lines += _confusion_lines("Confusion matrix (rows: true, columns: predicted"
                            + (", argmax)" if at else ")"), class_names,
                            test["confusion_matrix"])
  if at:
    lines += _confusion_lines(f"At the val threshold (t={_fmt_threshold(at['threshold'])})",
                              class_names, at["confusion_matrix"])
  if len(class_names) > 2:
    lines += ["", "Per class:", "", "| class | precision | recall | F1 | support |",
              "|---|---|---|---|---|"]
    for name in class_names:
      row = test["per_class"][name]
      lines.append(f"| {name} | {row['precision']:.3f} | {row['recall']:.3f} | "
                   f"{row['f1-score']:.3f} | {int(row['support'])} |")
  last = results_lib.last_epoch(results)
  if last and last["epoch"] != results["selected_epoch"]:
    figures = ", ".join(
        f"{name} {_fmt(last['test']['metrics'][name])}"
        + (" [{:.3f}, {:.3f}]".format(*results_lib.interval(last["test"], name))
           if results_lib.interval(last["test"], name) else "")
        for name in ("accuracy", "roc_auc", "roc_auc_ovr") if name in last["test"]["metrics"])
    lines += ["", f"The last epoch ({last['epoch']}) on test, for comparison only (not the "
              f"selected checkpoint): {figures}; "
              f"confusion matrix {last['test']['confusion_matrix']}."]
  return lines


def _multilabel_lines(results: dict) -> list[str]:
  """A multi-label run's test section: the macro AUROC, then one row per finding."""
  test, thresholds = results["test"], results.get("thresholds", {})
  macro = test["metrics"]["macro_roc_auc"]
  defined = sum(f["roc_auc"] is not None for f in test["findings"].values())
  lines = ["", f"## Test set ({test['num_examples']} images)", "",
           f"Macro AUROC {_fmt(macro)} {_interval(test, 'macro_roc_auc')} over the {defined} "
           f"findings with a known positive and negative on test; macro average precision "
           f"{_fmt(test['metrics']['macro_average_precision'])}; test loss {test['loss']:.4f}. "
           f"Each finding is measured on its known labels only; its threshold was chosen on "
           f"val ({results['val']['num_examples']} images) and applied unchanged to test.", "",
           "| finding | test pos. / neg. / unknown | AUROC | 95% CI | AP | val threshold | "
           "sensitivity | specificity | ECE |",
           "|---|---|---|---|---|---|---|---|---|"]
  for name, f in test["findings"].items():
    counts = f"{f['positives']} / {f['negatives']} / {f['unknown']}"
    if f["roc_auc"] is None:
      lines.append(f"| {name} | {counts} | undefined ({f['undefined']}) | — | — | — | — | — | "
                   f"{_fmt(f.get('ece'))} |")
      continue
    at = f.get("at_threshold") or {}
    rule = thresholds.get(name, {})
    lines.append(f"| {name} | {counts} | {_fmt(f['roc_auc'])} | {_interval(f, 'roc_auc')} | "
                 f"{_fmt(f['average_precision'])} | "
                 f"{_fmt_threshold(rule['value']) if rule.get('value') is not None else '—'}"
                 f"{' (' + rule['rule'] + ')' if rule.get('rule') == 'fixed' else ''} | "
                 f"{_fmt(at.get('sensitivity'))} | {_fmt(at.get('specificity'))} | "
                 f"{_fmt(f.get('ece'))} |")
  last = results_lib.last_epoch(results)
  if last and last["epoch"] != results["selected_epoch"]:
    lines += ["", f"The last epoch ({last['epoch']}) on test, for comparison only (not the "
              f"selected checkpoint): macro AUROC {_fmt(last['test']['metrics']['macro_roc_auc'])} "
              f"{_interval(last['test'], 'macro_roc_auc')}."]
  return lines


def _extra_test_lines(results: dict) -> list[str]:
  """One section per extra test set: its figures, by the checkpoint and threshold val chose."""
  lines = []
  for name, figures in results["extra_tests"].items():
    at = figures.get("at_threshold")
    lines += ["", f"## Extra test set: {name} ({figures['num_examples']} images)", "",
              "Evaluated with the selected checkpoint and the val threshold; it chose nothing.",
              "", *_test_table(figures, {})]
    lines += _confusion_lines("Confusion matrix (rows: true, columns: predicted"
                              + (", argmax)" if at else ")"), results["class_names"],
                              figures["confusion_matrix"])
    lines += ["", f"Expected calibration error: {figures['calibration']['ece']:.3f}."]
  return lines


def _shift_lines(results: dict) -> list[str]:
  """Val against each test set, and a plain warning for each that looks shifted."""
  lines = ["", "## Distribution shift (val against each test set)", "",
           "| test set | KS D | KS p | share called positive (val / test) | "
           "mean confidence (val / test) | ECE (val / test) | shifted |",
           "|---|---|---|---|---|---|---|"]
  for name, f in results["shift"].items():
    rate = ("—" if f["test_positive_rate"] is None
            else f"{f['val_positive_rate']:.3f} / {f['test_positive_rate']:.3f}")
    lines.append(f"| {name} | {f['ks_statistic']:.3f} | {f['ks_p_value']:.2g} | {rate} | "
                 f"{f['val_mean_confidence']:.3f} / {f['test_mean_confidence']:.3f} | "
                 f"{f['val_ece']:.3f} / {f['test_ece']:.3f} | {'**yes**' if f['shifted'] else 'no'} |")
  for warning in shift.warnings(results):
    lines += ["", f"**Warning.** {warning}"]
  return lines


def _patient_lines(patient: dict, class_names) -> list[str]:
  """The patient-level section: figures per patient, with their own val threshold."""
  test, val = patient["test"], patient["val"]
  at = test.get("at_threshold")
  lines = ["", f"## Per patient ({test['num_patients']} test patients, {test['num_images']} "
           f"images)", "",
           f"A patient's probabilities are the {patient['aggregate']} of their images'; a patient "
           f"is positive when any of their images is. Intervals resample patients."
           + (f" The threshold t={_fmt_threshold(patient['threshold']['value'])} was chosen on "
              f"the {val['num_patients']} val patients by the same rule as the images'."
              if at else ""), "",
           f"| metric | per patient{' (argmax)' if at else ''} | 95% CI |"
           + (" at the patients' val threshold | 95% CI |" if at else ""),
           "|---|---|---|" + ("---|---|" if at else "")]
  for name in _ROWS:
    if name in test["metrics"]:
      lines.append(f"| {name} | {_fmt(test['metrics'][name])} | {_interval(test, name)} |"
                   + (f" {_fmt(at['metrics'][name])} | {_interval(at, name)} |" if at else ""))
  return lines


# results.json's fields that report.md shows in sections of their own, or that are not figures.
_KNOWN = {"schema_version", "experiment", "overrides", "class_names", "platform", "runtime",
          "selected_epoch", "selection", "epochs_trained", "mean_epoch_seconds",
          "mean_train_seconds", "reference", "data", "class_balance", "evaluators", "val", "test",
          "last_epoch", "threshold", "patient_level", "artifacts", "predictions", "extra_tests",
          "shift", "thresholds"}


def _other_lines(results: dict) -> list[str]:
  """Results of evaluators report.md has no section for (your own): each, by its key."""
  lines = []
  for key in results:
    if key not in _KNOWN:
      lines += ["", f"## {key}", ""] + [f"- {name}: {_value(value)}"
                                        for name, value in _flat(results[key]).items()]
  return lines


def _flat(value, prefix: str = "") -> dict:
  if not isinstance(value, dict):
    return {prefix or "value": value}
  flat = {}
  for key, item in value.items():
    flat.update(_flat(item, f"{prefix}.{key}" if prefix else str(key)))
  return flat


def _value(value) -> str:
  return f"{value:.4g}" if isinstance(value, float) else str(value)


def _figure_lines(artifacts) -> list[str]:
  """The figures the evaluators wrote, in their order."""
  if artifacts is None:  # results.json of schema 1: the figures every run then wrote
    artifacts = ["curves.png", "confusion_matrix.png", "roc.png", "calibration.png",
                 "failure_cases.png", "tsne.png"]
  figures = [name for name in artifacts if name.endswith(".png")]
  if not figures:
    return []
  lines = ["", "## Figures", ""]
  lines += [f"![{name.removesuffix('.png').replace('_', ' ')}]({name})" for name in figures
            if name != "gradcam_correct.png"]
  if "gradcam_correct.png" in figures:
    lines += ["", "Grad-CAM of the predicted class (the backbone's last convolutional map, "
              "upsampled; red is where the evidence for it lies, scaled to each image's peak) is "
              "overlaid on the failure cases and on a seeded sample of correct test cases:", "",
              "![Grad-CAM on correct test cases](gradcam_correct.png)"]
  return lines + [""]


# Overrides that say where things are, not what is computed: they leave the recipe as it is.
_PLACEMENT = ("dataset.prepared_dir=",)


def _overrides_line(overrides) -> str:
  recipe = [o for o in overrides if not o.startswith(_PLACEMENT)]
  if recipe:
    return (f"Overrides of the experiment file: `{' '.join(overrides)}` — this is not the "
            f"experiment's recipe as written.")
  if overrides:
    return (f"Run as the experiment file declares it (overrides that only place files: "
            f"`{' '.join(overrides)}`).")
  return "Run exactly as the experiment file declares it."


def _balance_lines(balance: dict | None, class_names) -> list[str]:
  """One line on class_balance, when the run used it (jaxray/train/balance.py)."""
  if not balance or (balance["loss_weights"] is None and balance["sampling"] == "shuffle"):
    return []
  parts = []
  if "train_finding_counts" in balance:  # multi-label: positive weights per finding
    counts = balance["train_finding_counts"]
    return ["Finding balance: positive weights " + ", ".join(
        f"{name} {w:.3f} ({p} positive, {n} negative)" for name, w, p, n in zip(
            class_names, balance["loss_weights"], counts["positive"], counts["negative"]))
        + " in the training images (each finding's negatives over its positives; 1 where it "
          "has none).", ""]
  if balance["loss_weights"]:
    parts.append("loss weights " + ", ".join(
        f"{name} {w:.3f}" for name, w in zip(class_names, balance["loss_weights"])))
  if balance["sampling"] == "balanced":
    parts.append("class-balanced sampling (each class drawn equally often, with replacement)")
  counts = ", ".join(f"{name} {n}" for name, n in zip(class_names,
                                                      balance["train_class_counts"]))
  return [f"Class balance: {'; '.join(parts)}; training images per class: {counts}.", ""]


def _fmt_threshold(value: float) -> str:
  return f"{value:.4g}"


def _interval(figures: dict, name: str) -> str:
  low_high = results_lib.interval(figures, name)
  return f"[{low_high[0]:.3f}, {low_high[1]:.3f}]" if low_high else "—"


def _test_table(test: dict, reference: dict) -> list[str]:
  """The test figures at argmax (the reports' rule), and at the val threshold when there is one."""
  at = test.get("at_threshold")
  extra = f" at val threshold (t={_fmt_threshold(at['threshold'])}), 95% CI |" if at else ""
  lines = [f"| metric | this run{' (argmax)' if at else ''} | 95% CI (bootstrap) |{extra} report |",
           "|---|---|---|" + ("---|" if at else "") + "---|"]
  for name in _ROWS:
    if name not in test["metrics"]:
      continue
    cell = (f" {_fmt(at['metrics'][name])} {_interval(at, name)} |" if at
            else "")
    lines.append(f"| {name} | {_fmt(test['metrics'][name])} | "
                 f"{_interval(test, name)} |{cell} {_fmt(reference.get(name))} |")
  if "loss" in test:
    lines.append(f"| loss | {test['loss']:.4f} | — |{' — |' if at else ''} "
                 f"{_fmt(reference.get('loss'))} |")
  return lines


def _threshold_and_calibration_lines(results: dict) -> list[str]:
  """How the decision threshold was chosen (or why argmax stays), and the ECE of each split."""
  lines = []
  chosen = results.get("threshold")
  if chosen and chosen["value"] is not None:
    rule = ("Youden's J, the highest sensitivity + specificity - 1" if chosen["rule"] == "youden"
            else f"the highest threshold reaching sensitivity {chosen['target_sensitivity']:g}")
    lines += ["", f"The threshold t={_fmt_threshold(chosen['value'])} on the probability of "
              f"{results['class_names'][1]} was chosen on the {chosen['val_images']} val images "
              f"by {rule} (val sensitivity {chosen['val_sensitivity']:.3f}, specificity "
              f"{chosen['val_specificity']:.3f}) and applied unchanged to test; argmax is the "
              f"reports' rule."]
  elif chosen:
    lines += ["", f"Every figure is argmax, no threshold: {chosen['reason']}."]
  figures = [f"{split} {results[split]['calibration']['ece']:.3f}"
             + (" [{:.3f}, {:.3f}]".format(*results[split]["calibration"]["ci95"])
                if "ci95" in results[split]["calibration"] else "")
             for split in ("test", "val") if "calibration" in results.get(split, {})]
  if figures:
    bins = results["test"]["calibration"]["bins"]
    lines += ["", f"Expected calibration error (top label, {bins} equal-width confidence bins; "
              f"0 is perfectly calibrated): " + ", ".join(figures) + ". See calibration.png."]
  return lines


def _confusion_lines(caption: str, class_names, matrix) -> list[str]:
  lines = ["", f"{caption}:", "",
           "| | " + " | ".join(f"{c} pred." for c in class_names) + " |",
           "|---" * (len(class_names) + 1) + "|"]
  for name, row in zip(class_names, matrix):
    lines.append(f"| {name} | " + " | ".join(str(v) for v in row) + " |")
  return lines


def _runtime_lines(runtime: dict) -> list[str]:
  """The runtime section as requested (config.json) and as it ran, per stretch of epochs."""
  stretches = runtime["by_epoch"]
  lines = ["", "## Runtime settings", "",
           "The `runtime` section (jaxray/runtime.py): CPU kernels and process settings that "
           "change float rounding, not what is computed.", "",
           "| setting | requested | " + " | ".join(
               f"ran with, from epoch {s['first_epoch']}" for s in stretches) + " |",
           "|---|---|" + "---|" * len(stretches)]
  for name, value in runtime["requested"].items():
    lines.append(f"| {name} | {value} | "
                 + " | ".join(str(s["resolved"][name]) for s in stretches) + " |")
  if len(stretches) > 1:
    lines += ["", "The run was resumed where these settings resolved differently: its epochs "
              "did not all train with the same kernels."]
  return lines
