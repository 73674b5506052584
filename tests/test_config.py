import pytest

from jaxray import config as config_lib

REPORT_RUNS = ("resnet18_scratch", "resnet18_scratch_15ep", "resnet18_scratch_aug", "demo")


def test_every_report_run_has_an_experiment_file():
  assert set(REPORT_RUNS) <= set(config_lib.available())


@pytest.mark.parametrize("name", config_lib.available())
def test_experiment_loads_and_cites_its_report(name):
  config = config_lib.load(name)
  module = __import__(f"experiments.{name}", fromlist=["get_config"])
  assert module.__doc__ and "python -m jaxray.main" in module.__doc__
  assert config.experiment == name
  assert "report" in config.reference
  assert config.input.batch_size > 0 and config.num_epochs > 0


def test_report_recipes():
  base = config_lib.load("resnet18_scratch")
  assert (base.optimizer.learning_rate, base.input.batch_size, base.num_epochs) == (1e-3, 32, 5)
  assert base.input.normalization.mean == (0.5303,) * 3
  assert base.optimizer.weight_decay == 0.0 and not base.augment.hflip
  assert config_lib.load("resnet18_scratch_15ep").num_epochs == 15
  aug = config_lib.load("resnet18_scratch_aug")
  assert aug.augment.rotation_degrees == 25 and aug.augment.hflip
  assert aug.optimizer.weight_decay == 1e-4 and aug.optimizer.name == "adam"


def test_unknown_experiment_lists_the_available_ones():
  with pytest.raises(ValueError, match="Available experiments: .*resnet18_scratch"):
    config_lib.load("resnet81")


def test_overrides_are_typed():
  config = config_lib.apply_overrides(config_lib.load("demo"), [
      "num_epochs=2", "optimizer.learning_rate=1e-4", "model.name=resnet34",
      "input.normalization.mean=(0.1, 0.2, 0.3)", "optimizer.learning_rate=1",
      "model.pretrained.path=/tmp/w.pth"])
  assert config.num_epochs == 2
  assert config.optimizer.learning_rate == 1.0 and isinstance(config.optimizer.learning_rate, float)
  assert config.model.name == "resnet34"
  assert config.input.normalization.mean == (0.1, 0.2, 0.3)
  assert config.model.pretrained.path == "/tmp/w.pth"


@pytest.mark.parametrize("override, message", [
    ("num_epoch=2", "unknown field 'num_epoch'"),
    ("optimiser.learning_rate=1", "no section 'optimiser'"),
    ("num_epochs=two", "num_epochs holds a int"),
    ("num_epochs", "expected key=value"),
])
def test_bad_overrides_name_the_field(override, message):
  with pytest.raises(ValueError, match=message):
    config_lib.apply_overrides(config_lib.load("demo"), [override])


def test_an_experiment_file_of_ones_own_loads_by_path(tmp_path):
  path = tmp_path / "my_run.py"
  path.write_text("from experiments import demo\n\n\ndef get_config():\n"
                  "  config = demo.get_config()\n  config.num_epochs = 3\n  return config\n")
  config = config_lib.load(str(path))
  assert config.num_epochs == 3 and config.experiment == str(path)
  assert config_lib.run_name(str(path)) == "my_run"
  with pytest.raises(FileNotFoundError, match="no such file"):
    config_lib.load(str(tmp_path / "missing.py"))


def test_an_experiment_may_not_invent_fields(tmp_path):
  path = tmp_path / "typo.py"
  path.write_text("from jaxray import base_config\n\n\ndef get_config():\n"
                  "  config = base_config.get_config()\n  config.input.batchsize = 8\n"
                  "  return config\n")
  with pytest.raises(ValueError, match="unknown field input.batchsize .*'batch_size'"):
    config_lib.load(str(path))
