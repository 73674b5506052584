"""A Kermany recipe meant to hold on another site's images: `resnet18_best`, made robust.

Why: `resnet18_best` scored 0.967 on the dev split (drawn from Kermany's train distribution) and
0.816 with specificity 0.53 on the official test split, which is shifted: its checkpoint,
threshold and calibration, all chosen on in-distribution validation, did not transfer. This
recipe keeps everything that is chosen on validation and changes what the model learns:

- Augmentation for another site's acquisition: report 000's rotation (±25 degrees), horizontal
  flip, brightness and contrast (±0.3 here, 0.2 there), plus a random zoom (±15%) and shift (±8%
  of the side) in one affine map, a random gamma (1/1.4 to 1.4) and Gaussian noise (sd 0.02).
- Label smoothing 0.1: targets of 0.95 / 0.05, so the model is not pushed to the certainty that
  made `resnet18_best` overconfident on the official split (its ECE there: 0.12, 0.01 on val).
- 6 epochs rather than 8 under the cosine schedule: stop before the weights fit the training
  site's idiosyncrasies.
- As `resnet18_best`: validation on 10% of the training patients, class-weighted loss, selection
  on val ROC AUC, the Youden threshold on val. Nothing is chosen on a test set.

  python -m jaxray.main --experiment=resnet18_robust --data_dir=~/data   # holds chest_xray/

docs/experiments.md gives its figures on half A of the official test split (trained on the whole
official train split), and the rule by which it was compared with `resnet18_best`: it did not
replace it.
"""

from experiments import resnet18_best


def get_config():
  config = resnet18_best.get_config()
  config.augment.update(dict(brightness=0.3, contrast=0.3, scale=0.15, translate=0.08,
                             gamma=0.4, noise=0.02))
  config.model.label_smoothing = 0.1
  config.num_epochs = 6
  return config
