"""Kermany et al.'s second task: normal / bacterial / viral pneumonia, ResNet-18 from scratch.

Not a run of the reports (report 000 left it for future work). Kermany et al. (Cell 2018) trained
it with transfer learning on the same images; this file is report 000's own recipe applied to it.

Methods: `resnet18_scratch_aug` (224 px, rotation ±25 degrees, brightness and contrast 0.2,
horizontal flip, Adam 1e-3 with L2 1e-4, batch 32, 5 epochs), with the label the pneumonia
subtype that preparation stored from each file name (dataset config "3class": no second
preparation). The checkpoint is chosen on 10% of the training patients, carved by patient and
stratified by class, rather than on Kaggle's 16-image val split. Three classes keep argmax: a
validation threshold is a binary-task tool.

  python -m jaxray.main --experiment=resnet18_3class --data_dir=~/data   # holds chest_xray/

Kermany et al. report 90.7% accuracy for bacterial vs viral pneumonia (their Figure 6); there is
no three-way figure to put beside ours, so `reference` holds none.
"""

from experiments import resnet18_scratch_aug


def get_config():
  config = resnet18_scratch_aug.get_config()
  config.dataset.config = "3class"
  config.dataset.val_from_train = dict(fraction=0.1, seed=0)
  config.track_test_per_epoch = False
  config.reference = dict(
      report="",
      notes="No published three-way figure on this split; Kermany et al. give bacterial vs "
            "viral accuracy 0.907 with transfer learning.",
  )
  return config
