import pytest

from robustdml.engine.config import ConfigError, TrainConfig


def test_dataset_defaults_fill_unset_fields_only():
    config = TrainConfig(dataset="fashion-mnist", epochs=3).resolved()
    assert config.epochs == 3 and config.model == "convnet" and config.batch_size % config.samples_per_class == 0
    resnet = TrainConfig(dataset="cub200").resolved()
    assert resnet.lr == 1e-5 and resnet.weight_decay == 4e-4 and resnet.samples_per_class == 2


@pytest.mark.parametrize("field,value,fragment", [
    ("dataset", "imagenet21k", "valid dataset names"),
    ("loss", "arcface", "valid loss names"),
    ("defense", "magic", "valid defense names"),
    ("miner", "random", "valid miner names"),
    ("batch_size", 100, "divisible by samples_per_class"),
    ("train_fraction", 1.5, "train_fraction"),
    ("amp", "fp8", "amp"),
])
def test_invalid_values_name_the_field(field, value, fragment):
    values = {"dataset": "fashion-mnist", "samples_per_class": 16, field: value}
    with pytest.raises(ConfigError, match=fragment):
        TrainConfig(**values).resolved()


@pytest.mark.parametrize("options,fragment", [
    ({"eps": -0.1}, "defense_options.eps"),
    ({"attack_rate": 1.5}, "defense_options.attack_rate"),
    ({"steps": 0}, "defense_options.steps"),
])
def test_invalid_defense_numbers_rejected(options, fragment):
    with pytest.raises(ConfigError, match=fragment):
        TrainConfig(defense_options=options).resolved()


def test_yaml_round_trip_and_unknown_fields(tmp_path):
    config = TrainConfig(epochs=2, defense_options={"eps": 0.1}).resolved()
    path = tmp_path / "config.yaml"
    config.save(path)
    assert TrainConfig.load(path) == config
    path.write_text("epochs: 2\nlearning_rate: 0.1\n")
    with pytest.raises(ConfigError, match="learning_rate"):
        TrainConfig.load(path)


def test_loss_option_typo_is_rejected_naming_the_valid_options():
    with pytest.raises(ConfigError, match="no option.*marign.*its options: margin"):
        TrainConfig(loss="triplet", loss_options={"marign": 0.1}).resolved()
    assert TrainConfig(loss="triplet", loss_options={"margin": 0.1}).resolved().loss_options == {"margin": 0.1}
