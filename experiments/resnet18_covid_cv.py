"""ResNet-18 from scratch on the CS542 COVID-19 `two` task, by 5-fold cross-validation.

Why: report 004's binary headline, 94.4%, is 17 of 18 test images, and its validation split is
15 images; on a dataset this small one split says little. Cross-validation by patient uses every
training image to validate once: each fold's model validates on its held-out fifth
(`dataset.cross_validation`, scikit-learn's StratifiedGroupKFold by patient, stratified by
class) and the folds' held-out predictions pool into one out-of-fold AUROC over all 84 training
images, with its interval. The dataset's 18 test images are untouched and reported per fold.

Methods: ResNet-18 from scratch (torchvision's init), 128 px (the images' detail at 224 px is not
what 84 images can teach), grayscale replicated to 3 channels, normalized with Kermany's mean and
std; random rotation up to 10 degrees and horizontal flip; Adam 1e-3 under a cosine schedule, L2
1e-4, batch 16, 30 epochs, and the last epoch's weights evaluated (`selection.metric="epoch"`):
a held-out fold that chose its checkpoint would grade its own choice, and with 17 images a fold
every epoch after the first few ties at val AUROC 1.0. The threshold is Youden's on the fold's
val, so the pooled figures at threshold are optimistic; the pooled AUROC does not depend on it.

  python launch/sweep.py --experiment=resnet18_covid_cv --folds=5 --workdir=runs/covid_cv \
      -- --data_dir=~/data/covid_cs542
  python -m jaxray.main --experiment=resnet18_covid_cv --data_dir=~/data/covid_cs542 \
      --set dataset.cross_validation.fold=2   # one fold
  python -m jaxray.compare --pool=val runs/covid_cv/fold_*

docs/experiments.md gives the measured figures.
"""

from jaxray import base_config


def get_config():
  config = base_config.get_config()
  config.dataset.name = "covid_cs542"
  config.dataset.config = "two"
  config.dataset.cross_validation = dict(folds=5, fold=0, seed=0)
  config.input.image_size = 128
  config.input.batch_size = 16
  config.augment.update(dict(rotation_degrees=10.0, hflip=True))
  config.optimizer.update(dict(schedule="cosine", weight_decay=1e-4))
  config.num_epochs = 30
  config.selection = dict(metric="epoch", mode="max")  # the last epoch: val chooses nothing
  config.evaluation.evaluators = ("classification", "threshold", "calibration", "curves",
                                  "confusion_matrix", "roc", "reliability")
  return config
