"""Report 004, Task 1: VGG16 transfer learning, COVID-19 vs normal chest X-rays.

Methods (report 004): the Keras VGG16 convolutional base with its ImageNet weights
(include_top=False, 224x224x3 input), left trainable, then Flatten -> Dense 256 ReLU ->
Dropout 0.5 -> Dense 1 sigmoid; binary cross-entropy; Adam, learning rate 5e-4 (Keras' epsilon
1e-7), batch 5, 40 epochs. Data: the CS542 class-challenge `two/` folder (normal = 0,
covid = 1, so the sigmoid gives P(covid)); the validation split is 15% of train, stratified by
class, seed 42 (dataset config `two`): train 84 / val 15 / test 18 images. Grayscale images
are replicated to 3 channels and preprocessed as `keras.applications.vgg16.preprocess_input`
does ("caffe": 0-255, BGR, minus the ImageNet channel means), which is what the ImageNet weights
expect; no augmentation (the report names none). Dense layers start from Keras' defaults
(Glorot-uniform kernels, zero biases).

  python -m jaxray.main --experiment=vgg16_covid_binary --data_dir=~/data/covid_cs542
  # without the Keras ImageNet weights (random init; far from the report's figure):
  python -m jaxray.main --experiment=vgg16_covid_binary --data_dir=... \\
      --set model.pretrained.source=''

Report: test accuracy 0.944 (17 of 18), test loss 0.3084, after the 40th epoch.
The report evaluated the model as it was after the last epoch (no checkpoint for Task 1), so the
checkpoint evaluated here is the last one as well (`selection.metric="epoch"`); pass
`--set selection.metric=val_loss --set selection.mode=min` for the best-validation one instead.
Test loss is recorded in results.json (`test.loss`).
"""

import ml_collections


def get_config():
  config = ml_collections.ConfigDict()
  config.seed = 0

  config.dataset = dict(name="covid_cs542", config="two", prepared_dir="",
                        train_split="train", val_split="val", test_split="test")
  config.input = dict(
      image_size=224,
      channels=3,  # grayscale replicated for the 3-channel ImageNet base
      batch_size=5,
      eval_batch_size=10,
      normalization=dict(kind="caffe"),  # = jaxray.weights.preprocessing("keras_vgg16")
      drop_remainder=False,  # Keras' fit trains on the epoch's remainder as a smaller batch
      num_threads=2,
  )
  config.augment = dict(rotation_degrees=0.0, hflip=False, brightness=0.0, contrast=0.0)

  config.model = dict(
      name="vgg16",
      include_top=False,
      head=dict(hidden=(256,), dropout=(0.5,), init="keras"),
      loss="sigmoid",  # Dense(1, sigmoid) + BinaryCrossentropy: the logit of covid (class 1)
      freeze_backbone=False,
      dtype="float32",
      pretrained=dict(source="keras_vgg16", path=""),
  )

  config.optimizer = dict(name="adam", learning_rate=5e-4, b1=0.9, b2=0.999, eps=1e-7,
                          weight_decay=0.0, schedule="constant", decay_epochs=(),
                          decay_factor=0.1)
  config.num_epochs = 40

  # The last epoch, as the report evaluated it (see the docstring).
  config.selection = dict(metric="epoch", mode="max")
  config.track_test_per_epoch = False  # the report plotted train and validation only
  config.evaluation = dict(bootstrap_samples=1000, failure_cases=8, tsne_max_train=1000)

  config.reference = dict(
      report="004 (Task 1)",
      accuracy=0.944,
      loss=0.3084,
      notes="Test accuracy 0.944 and test loss 0.3084 after epoch 40 of 40 (18 test images: "
            "one mistake). The report gives no other test metric; its t-SNE of the penultimate "
            "features shows two clusters with a few overlapping points.",
  )
  return config
