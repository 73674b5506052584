"""gradcam_findings.png: where a multi-label run found its evidence, on test images.

With `evaluation.gradcam_finding` set (a finding's name), the test images most likely to show
that finding, each with the Grad-CAM of its logit; otherwise the most confident test images,
each with the Grad-CAM of its own top finding. `evaluation.failure_cases` images in all. Titles
give the finding explained, its probability and whether the label says it is present.
"""

import numpy as np

from jaxray.evaluate import plots


def select(prediction: dict, count: int, finding: int | None) -> tuple[np.ndarray, np.ndarray]:
  """(positions of the test images shown, the finding explained for each)."""
  probabilities = prediction["probabilities"]
  if finding is None:
    top = probabilities.argmax(-1)
    shown = np.argsort(-probabilities.max(-1), kind="stable")[:count]
    return shown, top[shown]
  shown = np.argsort(-probabilities[:, finding], kind="stable")[:count]
  return shown, np.full(len(shown), finding)


def run(context) -> dict:
  names = list(context.class_names)
  wanted = context.config.evaluation.gradcam_finding
  if wanted and wanted not in names:  # validation checks it too, once the dataset is known
    raise ValueError(f"evaluation.gradcam_finding={wanted!r}: not a finding of this dataset "
                     f"({', '.join(names)}).")
  test = context.predictions["test"]
  shown, explained = select(test, context.config.evaluation.failure_cases,
                            names.index(wanted) if wanted else None)
  examples = context.examples("test", shown)
  label_text = {1: "present", 0: "absent", -1: "unknown"}
  titles = [f"{names[f]} p={test['probabilities'][i, f]:.2f} ({label_text[int(test['label'][i, f])]})"
            f"\n{str(test['file_name'][i])[-36:]}" for i, f in zip(shown, explained)]
  plots.gradcam_grid([e["image"] for e in examples], context.explain(examples, explained),
                     titles, context.output("gradcam_findings.png"),
                     heading=(f"Grad-CAM of {wanted}" if wanted else
                              "Grad-CAM of each image's top finding"),
                     label="Grad-CAM of the finding named (1 = the image's peak)")
  return {}
