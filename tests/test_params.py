import pytest
import yaml

from selfsup.params import Params, ParamsError, load_params, parse_params, to_dict
from selfsup.pretexts import get_pretext
from tests.conftest import REPO


def repo_params() -> dict:
    return yaml.safe_load((REPO / "params.yaml").read_text())


def with_value(dotted: str, value) -> dict:
    raw = repo_params()
    *parents, last = dotted.split(".")
    node = raw
    for key in parents:
        node = node[key]
    node[last] = value
    return raw


def test_repo_params_are_valid():
    params = load_params(REPO / "params.yaml")
    assert params.pretext in params.pretexts
    assert params.finetune.labels_per_class == "all" or params.finetune.labels_per_class > 0


@pytest.mark.parametrize(
    "dotted, value, message",
    [
        ("finetune.lr", -0.1, "finetune.lr is -0.1; expected a positive number"),
        ("finetune.batch_size", 0, "finetune.batch_size is 0; expected a positive integer"),
        ("finetune.batch_size", 12.5, "finetune.batch_size is 12.5; expected a positive integer"),
        ("finetune.seed", 1.5, "finetune.seed is 1.5; expected an integer"),
        ("finetune.labels_per_class", "some", "expected a positive integer or `all`"),
        ("finetune.labels_per_class", 0, "expected a positive integer or `all`"),
        ("finetune.protocol", "linear", "expected 'full' or 'fc' or 'head'"),
            ("finetune.pretrained_lr", 0, "expected a fraction of lr in (0, 1]"),
            ("compute.device", "tpu", "expected 'auto' or 'cpu' or 'cuda' or 'mps'"),
            ("probe.labels_per_class", [10, "most"], "probe.labels_per_class[1] is 'most'"),
            ("probe.labels_per_class", [10, 0], "expected positive integers or `all`"),
        ("model.norm", "layer", "expected 'batch' or 'lrn' or 'none'"),
        ("data.folder.channels", 3.0, "data.folder.channels is 3.0; expected 1 or 3"),  # equal to 3, not 3
        ("data.folder.channels", True, "data.folder.channels is True; expected 1 or 3"),  # YAML's true equals 1
        ("preprocess.val_fraction", 1.0, "expected a number in (0, 1)"),
        ("finetune.augment.flip", "yes", "expected true or false"),
        ("finetune.min_steps", -1, "finetune.min_steps is -1; expected 0 or more optimizer steps"),
        ("pretrain.common.lr", float("inf"), "pretrain.common.lr is inf; expected a positive number"),
        ("finetune.weight_decay", ".nan", "finetune.weight_decay is '.nan'; expected 0 or more"),
        ("finetune.consistency.weight", "1e999", "finetune.consistency.weight is '1e999'; expected 0 or more"),
        ("finetune.seed", 2**64, "finetune.seed is 18446744073709551616; expected an integer from 0 to 4294967295"),
        ("pretrain.common.seed", -1, "pretrain.common.seed is -1; expected an integer from 0"),
        ("preprocess.seed", 2**32, "preprocess.seed is 4294967296; expected an integer from 0"),
        ("probe.labels_per_class", [10, 100, 10], "probe.labels_per_class lists 10 twice; list each budget once"),
        ("probe.labels_per_class", ["all", "all"], "probe.labels_per_class lists 'all' twice"),
        ("probe.labels_per_class", [], "probe.labels_per_class is empty; list at least one budget"),
        ("finetune.consistency.strong.scale_min", 1.5,
         "finetune.consistency.strong.scale_min (1.5) is above scale_max (1.2); swap them"),
    ],
)
def test_bad_values_name_the_key_and_the_fix(dotted, value, message):
    with pytest.raises(ParamsError, match=r"params.yaml: ") as err:
        parse_params(with_value(dotted, value))
    assert message in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    "dotted, value, message",
    [
        ("pretrain.rotation.epochs", 0, "pretrain.rotation.epochs is 0; expected a positive integer"),
        ("pretrain.rotation.views", 5, "pretrain.rotation.views is 5; expected 1 to 4 rotations per image"),
        ("pretrain.exemplar.views", 1, "pretrain.exemplar.views is 1; expected 2 or more views per image"),
        ("pretrain.exemplar.view", 6, "unknown key 'pretrain.exemplar.view' (a typo?); valid keys here: epochs, views"),
        ("pretrain.autoencoder", [1], "pretrain.autoencoder must be a mapping"),
        ("pretrain.exemplar.scale_min", 1.4, "pretrain.exemplar.scale_min (1.4) is above scale_max (1.3); swap them"),
        ("pretrain.rotation.translate", float("-inf"), "pretrain.rotation.translate is -inf"),
    ],
)
def test_a_pretext_section_is_checked_by_its_own_params_class(dotted, value, message):
    """Each pretext's section is validated against the dataclass in its module when that pretext is
    loaded (by its own pretrain stage), so no stage loads the code of pretexts it does not run."""
    name = dotted.split(".")[1]
    with pytest.raises(ParamsError, match=r"params.yaml: ") as err:
        parse_params(with_value(dotted, value)).pretrain.section(name, get_pretext(name).params)
    assert message in str(err.value)


def test_a_section_for_a_pretext_with_no_module_is_a_typo():
    with pytest.raises(ParamsError, match=r"unknown key 'pretrain.rotaton' \(a typo, or a pretext with no module in "
                                          r"selfsup/pretexts/\?\); valid keys here: common, autoencoder, exemplar"):
        parse_params(with_value("pretrain.rotaton", {"epochs": 1}))


def test_a_missing_pretext_section_means_its_defaults():
    raw = repo_params()
    del raw["pretrain"]["rotation"]
    spec = get_pretext("rotation")
    assert parse_params(raw).pretrain.section("rotation", spec.params) == spec.params()


def test_unknown_key_is_an_error_not_ignored():
    with pytest.raises(ParamsError, match=r"unknown key 'finetune.lerning_rate'.*valid keys here: .*\blr\b"):
        parse_params(with_value("finetune.lerning_rate", 0.1))


def test_unknown_pretext_lists_valid_names():
    with pytest.raises(ParamsError, match=r"unknown pretext 'bogus'; valid pretexts: autoencoder, exemplar, none, rotation"):
        parse_params(with_value("pretext", "bogus"))


def test_pretext_must_be_pretrained():
    raw = with_value("pretexts", [])
    with pytest.raises(ParamsError, match=r"pretext 'none' is not pretrained; add it to `pretexts`"):
        parse_params(raw)


def test_the_largest_seed_is_accepted_and_seeds_every_generator_derived_from_it():
    import torch

    from selfsup.train import derived_seeds

    params = parse_params(with_value("finetune.seed", 2**32 - 1))
    seed = params.finetune.seed
    for rank in (0, 7, 1023):  # every seed training derives from it seeds a generator (at most 2**64 - 1)
        for derived in derived_seeds(seed, rank):
            torch.Generator().manual_seed(derived)
    assert len({s for rank in range(4) for s in derived_seeds(seed, rank)}) == 8  # a stream of its own each


def test_yaml_exponent_without_dot_reads_as_float():
    assert parse_params(with_value("finetune.weight_decay", "5e-4")).finetune.weight_decay == 5e-4


def test_labels_per_class_accepts_int_and_all():
    assert parse_params(with_value("finetune.labels_per_class", 100)).finetune.labels_per_class == 100
    assert parse_params(with_value("finetune.labels_per_class", "all")).finetune.labels_per_class == "all"


def test_params_are_frozen():
    params = parse_params(repo_params())
    with pytest.raises(AttributeError):
        params.finetune.lr = 1.0


def test_missing_file_says_where_to_run(tmp_path):
    with pytest.raises(ParamsError, match="not found; run the stages from the repository root"):
        load_params(tmp_path / "params.yaml")


def test_every_default_in_the_code_is_params_yamls():
    """One default per knob: reading a dataclass tells the truth about a default run."""
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    params = parse_params(raw)
    in_code = to_dict(Params(pretext=params.pretext, pretexts=params.pretexts))
    in_yaml = to_dict(params)
    in_code.pop("pretrain"), in_yaml.pop("pretrain")
    assert in_code == in_yaml
    assert to_dict(params.pretrain.common) == to_dict(type(params.pretrain.common)())
    for name in params.pretexts:
        spec = get_pretext(name)
        assert to_dict(params.pretrain.section(name, spec.params)) == to_dict(spec.params()), name
