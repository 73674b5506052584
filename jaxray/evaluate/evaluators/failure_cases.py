"""failure_cases.png: the most confident test mistakes, then correct cases, as report 000's grid
mixes both, each with the Grad-CAM of its predicted class."""

import numpy as np

from jaxray.evaluate import plots


def select(prediction: dict, count: int) -> np.ndarray:
  """The most confident mistakes first, then correct examples, `count` in all."""
  predicted = prediction["probabilities"].argmax(-1)
  confidence = prediction["probabilities"].max(-1)
  wrong = np.flatnonzero(predicted != prediction["label"])
  right = np.flatnonzero(predicted == prediction["label"])
  wrong = wrong[np.argsort(-confidence[wrong], kind="stable")][:max(count // 2, count - len(right))]
  right = right[:count - len(wrong)]
  return np.concatenate([wrong, right]).astype(int)


def grid(context, shown: np.ndarray, name: str, heading: str = "") -> None:
  """A grid of the test examples at positions `shown`, with Grad-CAM of the predicted class."""
  test = context.predictions["test"]
  predicted = test["probabilities"].argmax(-1)[shown]
  examples = context.examples("test", shown)
  plots.failure_grid([e["image"] for e in examples], test["label"][shown], predicted,
                     context.class_names, context.output(name),
                     titles=[str(name) for name in test["file_name"][shown]],
                     heatmaps=context.explain(examples, predicted), heading=heading)


def run(context) -> dict:
  grid(context, select(context.predictions["test"], context.config.evaluation.failure_cases),
       "failure_cases.png")
  return {}
