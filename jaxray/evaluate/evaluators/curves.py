"""curves.png: loss and accuracy per epoch, as report 000 plots them."""

from jaxray.evaluate import plots


def run(context) -> dict:
  plots.curves(context.history, context.output("curves.png"))
  return {}
