"""Multi-label ResNet-18 on NIH ChestX-ray14: 14 findings per image, each present or absent.

Data: Wang et al. (CVPR 2017), 112,120 frontal X-rays of 30,805 patients, 14 findings mined
from the reports (`nih_chestxray14`: NIH's `images/`, `Data_Entry_2017_v2020.csv`,
`train_val_list.txt` and `test_list.txt`; "No Finding" is all 14 absent). Validation is 10% of
the train_val patients (`dataset.random_split.val`), never an image of a test patient.

Methods: ResNet-18 from scratch with one sigmoid output per finding, binary cross-entropy per
finding with each finding's positives weighted by its negatives over its positives in train
(`class_balance.loss_weights="balanced"`, PyTorch's `pos_weight`: most findings are on under 5%
of the images), unknown labels masked. Adam 1e-3 under a cosine schedule, L2 1e-4, batch 32,
random horizontal flip and rotation up to 10 degrees, 224 px, 8 epochs. The checkpoint is the
epoch of best val macro AUROC; each finding's threshold is chosen on val (Youden's J).

  python -m jaxray.main --experiment=resnet18_nih14 --data_dir=~/data/nih   # holds images/
  # ImageNet weights, as CheXNet: --set model.pretrained.source=torchvision_resnet18
  # small images (e.g. a 64-px copy): --set input.image_size=64

Reference a full run aims at: CheXNet (Rajpurkar et al., 2017, arXiv:1711.05225), a DenseNet-121
from ImageNet weights at 224 px on NIH's official split, per-finding test AUROC: Atelectasis
0.809, Cardiomegaly 0.925, Effusion 0.864, Infiltration 0.735, Mass 0.868, Nodule 0.780,
Pneumonia 0.768, Pneumothorax 0.889, Consolidation 0.790, Edema 0.888, Emphysema 0.937,
Fibrosis 0.805, Pleural Thickening 0.806, Hernia 0.916; mean 0.841. A ResNet-18 from scratch is
a smaller, untransferred model: the gap to these figures is the measurement, not a bug.
docs/experiments.md gives the measured figures.
"""

from jaxray import base_config


def get_config():
  config = base_config.get_config()
  config.task = "multilabel"
  config.dataset.name = "nih_chestxray14"
  config.model.loss = "sigmoid"  # one sigmoid output per finding
  config.class_balance.loss_weights = "balanced"  # per-finding positive weights from train
  config.augment.update(dict(hflip=True, rotation_degrees=10.0))
  config.optimizer.update(dict(schedule="cosine", weight_decay=1e-4))
  config.num_epochs = 8
  config.selection = dict(metric="val_roc_auc", mode="max")  # the macro AUROC over findings
  config.evaluation.evaluators = ("multilabel", "curves", "multilabel_roc", "multilabel_gradcam")
  config.reference = dict(
      report="CheXNet, Rajpurkar et al. 2017 (DenseNet-121, ImageNet weights, NIH's test split)",
      macro_roc_auc=0.841,
      notes="Per-finding AUROCs in this file's docstring; CheXNet's figures are on NIH's official "
            "test list.",
  )
  return config
