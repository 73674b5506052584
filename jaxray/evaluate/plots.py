"""The figures of the reports, for every run: curves, confusion matrix, ROC, failures, t-SNE."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib import ticker  # noqa: E402
from sklearn import calibration as skcal, manifold, metrics as skm  # noqa: E402

from jaxray.evaluate import calibration  # noqa: E402
from jaxray.evaluate import gradcam  # noqa: E402

_SPLIT_STYLE = {"train": ("tab:blue", "-"), "val": ("tab:red", "-"), "test": ("tab:green", "--")}


def curves(history: list[dict], path) -> None:
  """Loss and accuracy per epoch for train / val / test (as report 000's figures)."""
  epochs = [h["epoch"] for h in history]
  fig, axes = plt.subplots(1, 2, figsize=(11, 4))
  for ax, quantity in zip(axes, ("loss", "accuracy")):
    for split, (color, style) in _SPLIT_STYLE.items():
      key = f"{split}_{quantity}"
      if any(key in h for h in history):
        ax.plot(epochs, [h.get(key, np.nan) for h in history], style, color=color, marker="o",
                label=split + (" (tracked, not used for selection)" if split == "test" else ""))
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))  # no half epochs
    ax.set_ylabel(quantity)
    ax.grid(alpha=0.3)
    ax.legend()
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def confusion_matrix(matrix, class_names, path, title="") -> None:
  matrix = np.asarray(matrix)
  fig, ax = plt.subplots(figsize=(1.4 * len(class_names) + 2.5, 1.2 * len(class_names) + 2))
  ax.imshow(matrix, cmap="Blues")
  for (i, j), value in np.ndenumerate(matrix):
    ax.text(j, i, str(value), ha="center", va="center",
            color="white" if value > matrix.max() / 2 else "black")
  ax.set_xticks(range(len(class_names)), [f"{c}\npred." for c in class_names])
  ax.set_yticks(range(len(class_names)), class_names)
  ax.set_ylabel("true")
  ax.set_title(title)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def roc_curve(labels, probabilities, class_names, path) -> None:
  fig, ax = plt.subplots(figsize=(5, 5))
  if probabilities.shape[1] == 2:
    fpr, tpr, _ = skm.roc_curve(labels, probabilities[:, 1])
    ax.plot(fpr, tpr, label=f"{class_names[1]} AUC {skm.auc(fpr, tpr):.3f}")
  else:
    for c, name in enumerate(class_names):
      if 0 < (labels == c).sum() < len(labels):
        fpr, tpr, _ = skm.roc_curve(labels == c, probabilities[:, c])
        ax.plot(fpr, tpr, label=f"{name} vs rest AUC {skm.auc(fpr, tpr):.3f}")
  ax.plot([0, 1], [0, 1], ":", color="gray")
  ax.set_xlabel("1 - specificity (false positive rate)")
  ax.set_ylabel("sensitivity (true positive rate)")
  ax.legend(loc="lower right")
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def failure_grid(images, labels, predictions, class_names, path, titles=None, heatmaps=None,
                 heading="") -> None:
  """Images with "prediction (true)" labels, red when wrong, as report 000's failure figure.

  `titles` (file names) go in each image's title as a second line, where they cannot run into
  the next row. `heatmaps` (Grad-CAM, one per image, any size) are overlaid in the jet colormap.
  """
  count = len(images)
  if count == 0:
    fig, ax = plt.subplots(figsize=(4, 1.5))
    ax.axis("off")
    ax.text(0.5, 0.5, "no test images", ha="center", va="center")
  else:
    columns = min(4, count)
    rows = int(np.ceil(count / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(3 * columns, 3.4 * rows + 0.4 * bool(heading)),
                             squeeze=False, layout="constrained")
    for ax in axes.ravel():
      ax.axis("off")
    for k, ax in enumerate(axes.ravel()[:count]):
      if heatmaps is None:
        ax.imshow(np.squeeze(images[k]), cmap="gray")
      else:
        ax.imshow(gradcam.overlay(images[k], heatmaps[k]))
      title = f"{class_names[predictions[k]]} ({class_names[labels[k]]})"
      if titles is not None:
        title += "\n" + _shorten(titles[k])
      wrong = labels[k] != predictions[k]
      ax.set_title(title, color="red" if wrong else "green", fontsize=9)
    if heatmaps is not None:
      fig.colorbar(plt.cm.ScalarMappable(cmap="jet"), ax=axes, shrink=0.6, aspect=30,
                   label="Grad-CAM of the predicted class (1 = the image's peak)")
    if heading:
      fig.suptitle(heading)
  fig.savefig(path, dpi=110)
  plt.close(fig)


def finding_curves(labels, probabilities, names, path) -> None:
  """roc.png of a multi-label run: one test ROC curve per finding, on its known labels; a
  finding without both a known positive and negative has no curve and says so in the legend."""
  fig, ax = plt.subplots(figsize=(6.5, 6))
  colours = plt.cm.tab20(np.linspace(0, 1, max(len(names), 2)))
  for k, name in enumerate(names):
    known = labels[:, k] >= 0
    y, p = labels[known, k], probabilities[known, k]
    if 0 < y.sum() < len(y):
      fpr, tpr, _ = skm.roc_curve(y, p)
      ax.plot(fpr, tpr, color=colours[k], lw=1.2, label=f"{name} {skm.auc(fpr, tpr):.3f}")
    else:
      ax.plot([], [], color=colours[k], label=f"{name}: no AUC ({int(y.sum())}/{len(y)} pos.)")
  ax.plot([0, 1], [0, 1], ":", color="gray")
  ax.set_xlabel("1 - specificity (false positive rate)")
  ax.set_ylabel("sensitivity (true positive rate)")
  ax.legend(loc="lower right", fontsize=7, title="test AUROC", title_fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def gradcam_grid(images, heatmaps, titles, path, heading="", label="") -> None:
  """Images with their Grad-CAM overlays and a title each (a multi-label run's explanations)."""
  count = len(images)
  columns = max(1, min(4, count))
  rows = max(1, int(np.ceil(count / columns)))
  fig, axes = plt.subplots(rows, columns, figsize=(3 * columns, 3.4 * rows + 0.4 * bool(heading)),
                           squeeze=False, layout="constrained")
  for ax in axes.ravel():
    ax.axis("off")
  for k, ax in enumerate(axes.ravel()[:count]):
    ax.imshow(gradcam.overlay(images[k], heatmaps[k]))
    ax.set_title(titles[k], fontsize=8)
  if count:
    fig.colorbar(plt.cm.ScalarMappable(cmap="jet"), ax=axes, shrink=0.6, aspect=30, label=label)
  if heading:
    fig.suptitle(heading)
  fig.savefig(path, dpi=110)
  plt.close(fig)


def _shorten(text: str, width: int = 36) -> str:
  """A file name cut in the middle to fit one image's width, keeping both ends."""
  if len(text) <= width:
    return text
  keep = (width - 1) // 2
  return text[:keep] + "…" + text[len(text) - (width - 1 - keep):]


def tsne(features_by_split: dict, labels_by_split: dict, class_names, path, seed: int = 0) -> None:
  """2-D t-SNE of penultimate features; test points filled, train points hollow."""
  splits = [s for s in ("test", "train") if s in features_by_split and len(features_by_split[s])]
  features = np.concatenate([features_by_split[s] for s in splits])
  perplexity = float(min(30.0, max(2.0, (len(features) - 1) / 3)))
  embedded = manifold.TSNE(n_components=2, perplexity=perplexity, init="pca",
                           random_state=seed).fit_transform(features)
  fig, ax = plt.subplots(figsize=(6.5, 5.5))
  colors = plt.get_cmap("tab10")
  start = 0
  for split in splits:
    labels = labels_by_split[split]
    points = embedded[start:start + len(labels)]
    start += len(labels)
    for c, name in enumerate(class_names):
      chosen = points[labels == c]
      kwargs = (dict(color=colors(c), s=22) if split == "test" else
                dict(facecolors="none", edgecolors=colors(c), s=16, alpha=0.5))
      ax.scatter(chosen[:, 0], chosen[:, 1], label=f"{name} ({split})", **kwargs)
  ax.set_title("t-SNE of penultimate-layer features")
  ax.legend(fontsize=8, markerscale=1.2)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def reliability_diagram(labels, probabilities, path, bins: int = 15, title: str = "") -> None:
  """Accuracy per confidence bin against the diagonal, ECE in the title, counts below.

  The left column is the top-label diagram the ECE summarises. For two classes a right column
  adds the positive class's curve (scikit-learn's calibration_curve): the observed frequency of
  the positive class against its predicted probability, the number a reader of one image's
  p(pneumonia) needs, over the whole [0, 1] range where top-label confidence starts at 0.5.
  """
  labels = np.asarray(labels)
  probabilities = np.asarray(probabilities)
  table = calibration.reliability_table(labels, probabilities, bins)
  ece = calibration.expected_calibration_error(labels, probabilities, bins)
  binary = probabilities.shape[1] == 2 and len(np.unique(labels)) == 2
  fig, axes = plt.subplots(2, 2 if binary else 1, figsize=(10 if binary else 5, 6),
                           squeeze=False, sharex="col", gridspec_kw={"height_ratios": (3, 1)})
  edges, width = table["edges"][:-1], 1.0 / bins
  filled = table["count"] > 0
  top, counts = axes[0, 0], axes[1, 0]
  top.bar(edges[filled], table["accuracy"][filled], width=width, align="edge",
          edgecolor="black", color="tab:blue", label="accuracy")
  top.bar(edges[filled], table["confidence"][filled] - table["accuracy"][filled],
          bottom=table["accuracy"][filled], width=width, align="edge", color="tab:red",
          alpha=0.3, hatch="//", label="gap to mean confidence")
  top.plot([0, 1], [0, 1], ":", color="gray", label="perfectly calibrated")
  top.set_ylabel("accuracy")
  top.set_title(f"{title + ', ' if title else ''}top label: ECE {ece:.3f} ({bins} bins)")
  top.legend(loc="upper left", fontsize=8)
  counts.bar(edges, table["count"], width=width, align="edge", color="gray", edgecolor="black")
  counts.set_xlabel("confidence (highest class probability)")
  counts.set_ylabel("images")
  if binary:
    curve, hist = axes[0, 1], axes[1, 1]
    frequency, predicted = skcal.calibration_curve(labels, probabilities[:, 1], n_bins=bins,
                                                   strategy="uniform")
    curve.plot(predicted, frequency, "o-", color="tab:blue", label="positive class")
    curve.plot([0, 1], [0, 1], ":", color="gray", label="perfectly calibrated")
    curve.set_ylabel("fraction positive")
    curve.set_title("positive class (class 1)")
    curve.legend(loc="upper left", fontsize=8)
    hist.hist(probabilities[:, 1], bins=table["edges"], color="gray", edgecolor="black")
    hist.set_xlabel("predicted probability of class 1")
    hist.set_ylabel("images")
  for ax in axes[0]:
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
