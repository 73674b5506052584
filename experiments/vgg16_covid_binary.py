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

from jaxray import base_config


def get_config():
  config = base_config.get_config()
  config.dataset.name = "covid_cs542"
  config.dataset.config = "two"
  config.input.batch_size = 5
  config.input.eval_batch_size = 10
  config.input.normalization = dict(kind="caffe")  # = jaxray.weights.preprocessing("keras_vgg16")

  config.model.name = "vgg16"
  config.model.head = dict(hidden=(256,), dropout=(0.5,), init="keras")
  config.model.loss = "sigmoid"  # Dense(1, sigmoid) + BinaryCrossentropy: the logit of covid
  config.model.pretrained.source = "keras_vgg16"

  config.optimizer.learning_rate = 5e-4
  config.optimizer.eps = 1e-7  # Keras' Adam
  config.num_epochs = 40
  config.selection.metric = "epoch"  # the last epoch, as the report evaluated it

  config.reference = dict(
      report="004 (Task 1)",
      accuracy=0.944,
      loss=0.3084,
      notes="Test accuracy 0.944 and test loss 0.3084 after epoch 40 of 40 (18 test images: "
            "one mistake). The report gives no other test metric; its t-SNE of the penultimate "
            "features shows two clusters with a few overlapping points.",
  )
  return config
