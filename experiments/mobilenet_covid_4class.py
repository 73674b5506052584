"""Report 004, Task 2, Model 2: MobileNet v1 fine-tuned, COVID-19 / normal / bacterial / viral.

Methods (report 004): the Keras MobileNet (v1, alpha 1.0) convolutional base with its ImageNet
weights (include_top=False), trainable, then Flatten -> Dense 256 ReLU -> Dropout 0.5 ->
Dense 256 ReLU -> Dropout 0.25 -> Dense 4 softmax ("similar model complexity as Model 1");
categorical cross-entropy; Adam, learning rate 1e-4 (Keras' epsilon 1e-7), batch 10, 100 epochs.
Data as `vgg16_covid_4class` (CS542 `all/`, train 169 / val 30 / test 36). Inputs are
preprocessed as `keras.applications.mobilenet.preprocess_input` ("inception": scaled to
[-1, 1]); BatchNorm layers of the base train (batch statistics, moving averages updated with
Keras' momentum 0.99), as in a trainable Keras base.

  python -m jaxray.main --experiment=mobilenet_covid_4class --data_dir=~/data/covid_cs542

Report: test accuracy 0.75, test loss 0.69; validation accuracy fluctuated after ~50 epochs.
The report does not say that this model used a checkpoint, so, like `vgg16_covid_binary`, the
last epoch is evaluated; `--set selection.metric=val_accuracy` keeps the best-validation one.
The report does not say whether the head flattens the 7x7x1024 map or pools it; we flatten, as
its VGG16 models do.
"""

from experiments import vgg16_covid_4class


def get_config():
  config = vgg16_covid_4class.get_config()
  config.input.batch_size = 10
  config.input.normalization = dict(kind="inception")  # = weights.preprocessing("keras_mobilenet")
  config.model.name = "mobilenet"
  config.model.head = dict(hidden=(256, 256), dropout=(0.5, 0.25), init="keras")
  config.model.freeze_backbone = False
  config.model.pretrained = dict(source="keras_mobilenet", path="")
  config.optimizer.learning_rate = 1e-4
  config.num_epochs = 100
  config.selection = dict(metric="epoch", mode="max")
  config.reference = dict(
      report="004 (Task 2, Model 2)",
      accuracy=0.75,
      loss=0.69,
      notes="Test accuracy 0.75 and loss 0.69 after 100 epochs (0.55 before the two dropout "
            "layers were added). Its t-SNE separates covid and normal well; bacterial and viral "
            "pneumonia overlap somewhat.",
  )
  return config
