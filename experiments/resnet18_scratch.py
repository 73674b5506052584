"""Report 000, Task 1.1 §3.3: ResNet-18 from scratch on Kermany chest X-ray, no augmentation.

Methods (report 000): torchvision ResNet-18, random initialisation, the final fully connected
layer replaced by a 2-way one; images resized to 224x224, grayscale replicated to 3 channels and
normalized with the dataset's mean 0.5303 / std 0.1944; Adam, learning rate 1e-3, batch 32,
cross-entropy, 5 epochs, training batches reshuffled every epoch. Test accuracy was tracked
after every epoch.

  python -m jaxray.main --experiment=resnet18_scratch --data_dir=~/data   # holds chest_xray/

Report: test accuracy 0.83 after 5 epochs (training accuracy 0.96).
Difference, on purpose: the checkpoint reported is chosen on validation, never on test.

The base config (jaxray/base_config.py) is this recipe: Kermany at 224 px, torchvision's init,
Adam 1e-3, batch 32, 5 epochs, the epoch's remainder as a last, smaller batch (as PyTorch's
DataLoader does). This file sets what the report adds.
"""

from jaxray import base_config


def get_config():
  config = base_config.get_config()
  config.track_test_per_epoch = True  # report 000 plotted test accuracy every epoch
  # Kermany's official test split has 624 images of 427 patients: figures per patient too.
  config.evaluation.evaluators += ("patient",)

  config.reference = dict(
      report="000 (Task 1.1, §3.3)",
      accuracy=0.83,
      notes="Test accuracy after epoch 5 of 5; the report gives no other test metric for "
            "this run.",
  )
  return config
