"""The base config: every field a run has, with its default and what it means.

An experiment (`experiments/NAME.py`) starts from `get_config()` and sets only what differs, so
its file reads as its paper's methods. Library code reads fields directly (`config.input.channels`,
never `.get(key, default)`): a field missing here is a bug, not a default.
"""

import ml_collections

from jaxray import runtime


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.experiment = ""  # set by the loader: the experiment's name or file path
  config.seed = 0  # initialisation, shuffling, augmentation and dropout all derive from it
  # "single_label": one class per image (softmax, or one sigmoid logit for two classes);
  # "multilabel": several findings per image, each present, absent or unknown: one sigmoid
  # output per finding, binary cross-entropy with unknowns masked (needs model.loss="sigmoid"
  # and a multi-label dataset; evaluate/multilabel.py says what is measured)
  config.task = "single_label"

  config.dataset = dict(
      # a builder of jaxray/data: chest_xray, covid_cs542, pneumoniamnist, synthetic, and
      # image_folder, table, nih_chestxray14, chexpert (settings below)
      name="chest_xray",
      config="",  # the builder's config (e.g. covid_cs542 "two" / "all"; "" = its default)
      prepared_dir="",  # where prepared data lives ("" = $TFDS_DATA_DIR or ~/tensorflow_datasets)
      # images with a side under this many pixels are skipped at preparation and by predict,
      # as are an aspect ratio over 10:1 and a constant image (data/images.py `degenerate`)
      min_image_side=32,
      # True: train on prepared data whose raw folder changed since it was prepared (the change
      # is recorded in results.json); False stops the run and names what changed
      allow_changed_source=False,
      train_split="train",  # the split trained on
      val_split="val",  # the split that selects the checkpoint
      test_split="test",  # the split reported, never used to choose anything
      # fraction > 0: validate on this share of train_split's patients instead of val_split,
      # stratified by class, drawn with its own seed; those patients leave train (data/splits.py)
      val_from_train=dict(fraction=0.0, seed=0),
      # folds >= 2: k-fold cross-validation by patient over train_split (sklearn's
      # StratifiedGroupKFold with `seed`): fold `fold` validates, the others train; test is
      # untouched (launch/sweep.py --folds=k runs every fold)
      cross_validation=dict(folds=0, fold=0, seed=0),
      # more test sets, each "NAME=PATH" with one folder of images per class: evaluated with the
      # selected checkpoint and the val threshold, never used to choose (data/folder_test.py)
      extra_tests=(),
      # The settings of the builders for your own data and of the multi-label benchmarks
      # (docs/datasets.md). Each setting is part of the prepared folder's name: a change
      # prepares again, into a folder of its own.
      # image_folder: --data_dir holds DIR/<class>/*, DIR/{train,test}/<class>/* or
      # DIR/{train,val,test}/<class>/* (data/image_folder.py)
      image_folder=dict(
          # a regex whose first group (or whole match) in a file name is its patient id, e.g.
          # r"^(person\d+)"; "" (or no match) = the file stem: each image its own patient
          patient_regex="",
      ),
      # table: a CSV with one row per image (data/table.py)
      table=dict(
          csv="",  # the CSV file
          image_root="",  # the folder the image paths start from ("" = the CSV's folder)
          path_column="path",  # the column of image paths
          label_column="",  # one class per image: the column of class names ...
          label_columns=(),  # ... or several findings per image: one 0/1 column each
          class_names=(),  # label_column's classes in label order (() = its sorted values)
          # cells that mean "unknown": a single-label row is left out, a multi-label cell is
          # stored as -1 and masked ("-1" also matches -1.0)
          unknown_values=("", "-1"),
          patient_column="",  # the column of patient ids ("" = each image its own patient)
          split_column="",  # the column of train / val / test ("" = drawn: random_split)
      ),
      chexpert=dict(  # data/chexpert.py
          uncertain="ignore",  # -1.0 labels: "ignore" (masked), "ones" or "zeros" (U-Ones/Zeros)
          frontal_only=False,  # True: lateral views (column Frontal/Lateral) are left out
      ),
      # fractions of patients (and the seed) wherever a builder draws splits itself, by patient
      # and stratified: val and test of image_folder / table without split folders or column,
      # val from train of those with no val, of nih_chestxray14 and of chexpert
      random_split=dict(val=0.1, test=0.2, seed=0),
  )
  config.input = dict(
      image_size=224,  # square side the images are resized to, in pixels
      channels=3,  # model input channels: 3 replicates the grayscale image (ImageNet layout)
      batch_size=32,  # global training batch, split over every device
      eval_batch_size=32,  # upper bound on the evaluation batch (evened out to pad little)
      normalization=dict(kind="mean_std", mean=(0.5303,) * 3, std=(0.1944,) * 3),  # see augment.normalize
      equalize=False,  # histogram-equalize each image before augmentation (augment.equalize)
      drop_remainder=False,  # False: the epoch's remainder trains as a last, smaller batch
      num_threads=2,  # grain reader threads
  )
  config.augment = dict(  # on the device, inside the jitted step, per example
      rotation_degrees=0.0,  # uniform rotation in [-deg, deg]
      hflip=False,  # horizontal flip with probability 1/2
      brightness=0.0,  # multiply by a factor in [1 - b, 1 + b]
      contrast=0.0,  # scale around the image mean by a factor in [1 - c, 1 + c]
      scale=0.0,  # zoom by a factor in [1 - s, 1 + s] (with the rotation, one affine map)
      translate=0.0,  # shift by up to this fraction of the side, each axis
      gamma=0.0,  # raise to a power in [1 / (1 + g), 1 + g], log-uniform
      noise=0.0,  # add Gaussian noise of this standard deviation (images in [0, 1])
  )
  config.model = dict(
      name="resnet18",  # a backbone of jaxray/models: resnet18, resnet34, vgg16, mobilenet
      stem="imagenet",  # ResNet: "imagenet" (7x7/2 + max-pool) or "cifar" (3x3/1, no pool)
      conv_init="torchvision",  # ResNet conv init: "torchvision" (Kaiming fan-out) or "torch_default"
      include_top=False,  # VGG16 / MobileNet: keep the ImageNet classifier layers
      head=dict(
          hidden=(),  # widths of the hidden Dense layers between backbone and output
          dropout=(),  # dropout rate after each hidden layer
          init="torch",  # Dense init: "torch" (nn.Linear) or "keras" (glorot, zero bias)
      ),
      loss="softmax",  # "softmax" (C logits, cross-entropy) or "sigmoid" (1 logit, binary CE)
      label_smoothing=0.0,  # training targets (1 - a) one-hot + a / C (softmax head only)
      freeze_backbone=False,  # train the head only; the backbone runs in inference mode
      dtype="float32",  # computation dtype: "float32" or "bfloat16" (parameters stay float32)
      pretrained=dict(
          source="",  # "" = random init, or a jaxray.weights source, e.g. torchvision_resnet18
          path="",  # a local weights file instead of the download
      ),
  )
  config.optimizer = dict(
      name="adam",  # "adam" (PyTorch Adam: weight decay is L2 on the gradient) or "adamw"
      learning_rate=1e-3,  # peak learning rate
      b1=0.9,  # Adam's first-moment decay
      b2=0.999,  # Adam's second-moment decay
      eps=1e-8,  # Adam's epsilon (PyTorch 1e-8, Keras 1e-7)
      weight_decay=0.0,  # L2 coefficient (adam) or decoupled decay (adamw)
      schedule="constant",  # "constant", "piecewise_constant" or "cosine"
      decay_epochs=(),  # piecewise_constant: epochs after which the rate is multiplied ...
      decay_factor=0.1,  # ... by this factor
  )
  config.class_balance = dict(  # for imbalanced training splits (Kermany: 3 pneumonia to 1 normal)
      loss_weights="none",  # "none", or "balanced": class c weighs n / (C n_c) in the train loss
      sampling="shuffle",  # "shuffle" (each image once an epoch) or "balanced" (classes equally often)
  )
  config.num_epochs = 5  # training epochs; the one training field that may grow on resume
  config.stop_on_nonfinite_loss = True  # a NaN/inf train or val loss stops the run, unsaved
  config.selection = dict(
      metric="val_accuracy",  # metrics.jsonl key that selects the evaluated checkpoint ("epoch": last)
      mode="max",  # "max" or "min"; ties go to the earliest epoch
  )
  config.track_test_per_epoch = False  # also log test metrics each epoch (never used to select)
  config.evaluation = dict(
      bootstrap_samples=1000,  # resamples behind every 95% interval
      failure_cases=8,  # images in failure_cases.png
      gradcam_correct=8,  # correct test images (seeded, classes in turn) in gradcam_correct.png
      gradcam_finding="",  # multi-label: the finding gradcam_findings.png explains ("" = each top)
      tsne_max_train=1000,  # training images in the t-SNE sample
      threshold=dict(  # binary tasks: the decision threshold, chosen on val (evaluate/threshold.py)
          rule="youden",  # "youden" (max sens + spec - 1), "target_sensitivity" or "argmax"
          target_sensitivity=0.95,  # rule target_sensitivity: highest threshold reaching it on val
      ),
      calibration_bins=15,  # equal-width confidence bins of the ECE and calibration.png
      # what the final evaluation runs, in order: modules of jaxray/evaluate/evaluators/, or
      # dotted names of your own (docs/results.md says what each writes)
      evaluators=("classification", "threshold", "calibration", "extra_tests", "shift",
                  "curves", "confusion_matrix", "roc", "reliability", "failure_cases",
                  "correct_cases", "tsne"),
      shift=dict(  # the "shift" evaluator: does a test set look drawn from val's distribution?
          alpha=0.001,  # two-sample Kolmogorov-Smirnov test of the scores: p below this warns
          ece_gap=0.05,  # test's calibration error (low end of its 95% interval) above val's warns
      ),
      patient=dict(  # the "patient" evaluator: figures per patient rather than per image
          aggregate="mean",  # a patient's probabilities: "mean" or "max" of their images'
      ),
  )
  config.reference = dict(  # the published figures report.md sets beside ours
      report="",  # which report and table
      notes="",  # what the figures are and where they come from
  )
  # CPU speed-ups: "auto", True or False each; jaxray/runtime.py says what each one does.
  config.runtime = runtime.defaults()
  return config
