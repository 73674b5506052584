"""report.md: this run's numbers next to the report's, with intervals and the figures."""

import pathlib

_ROWS = ("accuracy", "sensitivity", "specificity", "precision", "f1", "roc_auc",
         "macro_precision", "macro_recall", "macro_f1", "roc_auc_ovr")


def _fmt(value) -> str:
  return "—" if value is None else f"{value:.3f}"


def write(path, results: dict, history: list[dict], reference: dict) -> None:
  test = results["test"]
  lines = [
      f"# {results['experiment']}",
      "",
      f"Reproduces report {reference['report'] or '—'}. Platform: "
      f"{results['platform']['backend']} ({results['platform']['device_kind']} x"
      f"{results['platform']['device_count']}). Epochs trained: {len(history)}; checkpoint "
      f"evaluated: epoch {results['selected_epoch']} (best {results['selection']['metric']}).",
      "",
      ("Overrides of the experiment file: `" + " ".join(results["overrides"]) + "` — this is "
       "not the report's recipe as written." if results.get("overrides") else
       "Run exactly as the experiment file declares it."),
      "",
      f"## Test set ({test['num_examples']} images)",
      "",
      "| metric | this run | 95% CI (bootstrap) | report |",
      "|---|---|---|---|",
  ]
  for name in _ROWS:
    if name not in test["metrics"]:
      continue
    low_high = test.get("ci95", {}).get(name)
    interval = f"[{low_high[0]:.3f}, {low_high[1]:.3f}]" if low_high else "—"
    lines.append(f"| {name} | {_fmt(test['metrics'][name])} | {interval} | "
                 f"{_fmt(reference.get(name))} |")
  if "loss" in test:
    lines.append(f"| loss | {test['loss']:.4f} | — | {_fmt(reference.get('loss'))} |")
  class_names = results["class_names"]
  lines += ["", "Confusion matrix (rows: true, columns: predicted):", "",
            "| | " + " | ".join(f"{c} pred." for c in class_names) + " |",
            "|---" * (len(class_names) + 1) + "|"]
  for name, row in zip(class_names, test["confusion_matrix"]):
    lines.append(f"| {name} | " + " | ".join(str(v) for v in row) + " |")
  if len(class_names) > 2:
    lines += ["", "Per class:", "", "| class | precision | recall | F1 | support |",
              "|---|---|---|---|---|"]
    for name in class_names:
      row = test["per_class"][name]
      lines.append(f"| {name} | {row['precision']:.3f} | {row['recall']:.3f} | "
                   f"{row['f1-score']:.3f} | {int(row['support'])} |")
  last = results.get("last_epoch")
  if last and last["epoch"] != results["selected_epoch"]:
    figures = ", ".join(
        f"{name} {_fmt(last['test']['metrics'][name])}"
        + (" [{:.3f}, {:.3f}]".format(*last["test"]["ci95"][name]) if "ci95" in last["test"]
           else "")
        for name in ("accuracy", "roc_auc", "roc_auc_ovr") if name in last["test"]["metrics"])
    lines += ["", f"The last epoch ({last['epoch']}) on test, for comparison only (not the "
              f"selected checkpoint): {figures}; "
              f"confusion matrix {last['test']['confusion_matrix']}."]
  if reference.get("notes"):
    lines += ["", f"Report's note: {reference['notes']}"]
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
  lines += ["", "## Figures", "",
            "![curves](curves.png) ![confusion matrix](confusion_matrix.png) ![ROC](roc.png)",
            "", "![failure cases](failure_cases.png)", "", "![t-SNE](tsne.png)", ""]
  pathlib.Path(path).write_text("\n".join(lines))


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
