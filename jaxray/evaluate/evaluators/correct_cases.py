"""gradcam_correct.png: a seeded sample of correct test cases, the classes taking turns (a test
set of mostly one class still shows the others), with the Grad-CAM of the predicted class."""

import numpy as np

from jaxray.evaluate.evaluators import failure_cases


def select(prediction: dict, count: int, seed: int) -> np.ndarray:
  predicted = prediction["probabilities"].argmax(-1)
  rng = np.random.default_rng(seed)
  by_class = [rng.permutation(np.flatnonzero((predicted == prediction["label"])
                                             & (prediction["label"] == c)))
              for c in range(prediction["probabilities"].shape[1])]
  turns = [members[rank] for rank in range(max(map(len, by_class), default=0))
           for members in by_class if rank < len(members)]
  return np.asarray(turns[:count], int)


def run(context) -> dict:
  shown = select(context.predictions["test"], context.config.evaluation.gradcam_correct,
                 context.config.seed)
  if len(shown):
    failure_cases.grid(context, shown, "gradcam_correct.png",
                       "Correct test cases (a seeded sample): Grad-CAM of the predicted class")
  return {}
