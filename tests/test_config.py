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
    ({"eps": -0.1}, r"defense_options.eps=-0.1: must be >= 0"),
    ({"attack_rate": 1.5}, r"defense_options.attack_rate=1.5: must be <= 1"),
    ({"steps": 0}, r"defense_options.steps=0: must be >= 1"),
    ({"eps": "8/255x"}, r"defense_options.eps='8/255x': must be a number"),
])
def test_invalid_defense_numbers_rejected(options, fragment):
    """The defense checks its own options; the config names them as defense_options.<field>."""
    with pytest.raises(ConfigError, match=fragment):
        TrainConfig(defense="robust-triplet", defense_options=options).resolved()


def test_an_option_the_defense_does_not_take_is_refused_before_training():
    with pytest.raises(ConfigError, match=r"defense_options.eps=0.1: natural: unknown option\(s\) eps"):
        TrainConfig(defense="natural", defense_options={"eps": 0.1}).resolved()


def test_yaml_round_trip_and_unknown_fields(tmp_path):
    config = TrainConfig(epochs=2, defense="est", defense_options={"eps": 0.1}).resolved()
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


def test_dataset_facts_live_on_the_dataset_registry_entry():
    from robustdml.data import dataset_spec

    assert dataset_spec("cub200").zero_shot and not dataset_spec("fashion-mnist").zero_shot
    assert dataset_spec("sop").defaults["lr"] == 1e-5 and dataset_spec("fashion-mnist").defaults["model"] == "convnet"
    resolved = TrainConfig(dataset="cub200").resolved()
    assert resolved.image_size == 224 and resolved.pretrained == "imagenet" and resolved.epochs == 150
    plain = TrainConfig(dataset="fashion-mnist").resolved()
    assert plain.image_size is None and plain.pretrained is None  # they do not apply: not set, not ignored


@pytest.mark.parametrize("values,fragment", [
    (dict(dataset="fashion-mnist", image_size=64), "image_size=64: dataset 'fashion-mnist' has a fixed input size"),
    (dict(dataset="fashion-mnist", pretrained="none"), "model 'convnet' has no pretrained weights"),
    (dict(samples_per_class=1, batch_size=16), "samples_per_class=1: must be >= 2"),
    (dict(seed=-1), "seed=-1"),
    (dict(lr=float("inf")), "lr=inf: must be a finite number"),
    (dict(device="cuda:x"), "device='cuda:x'"),
])
def test_every_field_is_checked_for_range_and_applicability(values, fragment):
    with pytest.raises(ConfigError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        TrainConfig(**values).resolved()


def test_an_older_run_config_is_read_as_it_was_meant(tmp_path):
    """Runs written before dataset/model facts moved to the registries hold image_size: 224 and
    pretrained: imagenet for every dataset and model."""
    path = tmp_path / "config.yaml"
    path.write_text("dataset: fashion-mnist\nmodel: convnet\nimage_size: 224\npretrained: imagenet\nepochs: 2\n")
    loaded = TrainConfig.load(path, run_directory=True).resolved()
    assert loaded.image_size is None and loaded.pretrained is None and loaded.epochs == 2
    with pytest.raises(ConfigError, match="image_size"):
        TrainConfig.load(path).resolved()  # a user's own file is taken at its word


def test_resume_config_applies_safe_changes_and_names_the_others():
    from robustdml.engine.config import resume_config

    saved = TrainConfig(dataset="synthetic-gaussian", epochs=2).resolved()
    config, applied = resume_config(saved, {"epochs": 4, "device": "cpu", "lr": saved.lr, "output": "elsewhere"})
    assert config.epochs == 4 and applied == {"epochs": [2, 4], "device": ["auto", "cpu"]}
    with pytest.raises(ConfigError, match=r"cannot change lr \(0.001 -> 0.1\), defense_options.eps \('unset' -> 0.2\)"):
        resume_config(saved, {"lr": 0.1, "defense_options": {"eps": 0.2}})
