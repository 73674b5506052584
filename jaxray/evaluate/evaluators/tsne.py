"""tsne.png: t-SNE of the penultimate features of test and a seeded sample of train, as report
004 shows them (evaluation.tsne_max_train images of train at most)."""

from jaxray.evaluate import plots

PREDICTIONS = ("train_sample",)


def run(context) -> dict:
  test, train = context.predictions["test"], context.predictions["train_sample"]
  plots.tsne({"test": test["features"], "train": train["features"]},
             {"test": test["label"], "train": train["label"]}, context.class_names,
             context.output("tsne.png"), seed=context.config.seed)
  return {}
