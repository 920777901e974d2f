"""Recipes load strictly: unknown keys and impossible values name the key and what is allowed."""

from pathlib import Path

import pytest
import yaml

from tsn_keras.config import (
    Config,
    apply_overrides,
    config_from_dict,
    load_config,
)
from tsn_keras.errors import ConfigError

RECIPES = sorted((Path(__file__).resolve().parents[1] / "recipes").glob("*.yaml"))


def test_the_bundled_recipes_are_all_there():
    names = {p.stem for p in RECIPES}
    for dataset in ("ucf101", "hmdb51"):
        for modality in ("rgb", "flow", "rgb_diff", "warped_flow"):
            assert f"{dataset}_{modality}" in names
    assert {"ucf101subset_rgb", "ucf101subset_flow", "ucf101subset_rgb_diff"} <= names


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.stem)
def test_every_bundled_recipe_loads_and_validates(recipe):
    config = load_config(recipe)
    assert config.validate() is config
    assert config.name == recipe.stem
    # The header says how to make the data it expects.
    assert "tsn convert" in recipe.read_text().split("\nname:")[0]


@pytest.mark.parametrize("recipe", [p for p in RECIPES if not p.stem.startswith(("ucf101subset", "demo"))],
                         ids=lambda p: p.stem)
def test_paper_recipes_use_the_papers_network(recipe):
    config = load_config(recipe)
    assert (config.data.num_segments, config.data.input_size, config.model.backbone) == (3, 224, "bn_inception")
    assert config.model.partial_bn and config.model.consensus == "avg"
    assert config.model.resolved_dropout(config.data.modality) == (0.7 if "flow" in config.data.modality else 0.8)
    # UCF101: the paper's batch of 256; HMDB51: the original Caffe solvers' 128 (32 x 4 GPUs), whose
    # iteration counts the HMDB51 recipes use.
    assert config.train.batch_size == (128 if recipe.stem.startswith("hmdb51") else 256)
    assert config.train.weight_decay == 5e-4


def test_recipe_by_bundled_name_and_split_override():
    config = load_config("ucf101_rgb", ["data.root=data/ucf101_split2", "train.micro_batch_size=32"])
    assert config.data.root == "data/ucf101_split2"
    assert config.train.micro_batch_size == 32


def test_resolved_yaml_reloads_identically(tmp_path):
    config = load_config("ucf101_flow", ["train.lr_steps=[10, 20]", "data.val_split=null"])
    path = tmp_path / "config.yaml"
    path.write_text(config.to_yaml())
    assert load_config(path) == config


@pytest.mark.parametrize(("override", "message"), [
    ("data.num_segment=3", r"unknown key data\.num_segment; valid keys in data: root, .*num_segments"),
    ("trian.lr=0.1", r"unknown key trian; valid keys: name, data, model, train, evaluate"),
    ("data.num_segments=0", r"data\.num_segments must be >= 1, got 0"),
    ("data.modality=depth", r"data\.modality must be one of rgb, rgb_diff, flow, warped_flow; got 'depth'"),
    ("model.backbone=vgg16", r"model\.backbone must be one of bn_inception, efficientnet_lite0, efficientnet_lite1, efficientnet_lite2, "
                           r"inception_v3, resnet50, mobilenet_v2, tiny"),
    ("model.consensus=mean", r"model\.consensus must be one of avg, max, weighted, topk, attention, gru, identity"),
    ("data.normalization=keras", r"data\.normalization must be one of auto, caffe_bgr, keras_caffe"),
    ("train.strategy=tpu", r"train\.strategy must be one of auto, default, mirrored, multi_worker"),
    ("train.mixed_precision=fp8", r"train\.mixed_precision must be one of float32, float16, bfloat16"),
    ("train.lr_steps=[4000, 2000]", r"train\.lr_steps must be increasing"),
    ("train.batch_size=many", r"train\.batch_size must be an integer"),
    ("model.dropout=1.5", r"model\.dropout must be in \[0, 1\)"),
    ("data.scales=[1.0, 1.2]", r"data\.scales must be a non-empty list of numbers in \(0, 1\]"),
])
def test_bad_values_name_the_key_and_what_is_allowed(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config("ucf101_rgb", [override])


def test_override_syntax_errors():
    with pytest.raises(ConfigError, match=r"must look like section\.key=value"):
        apply_overrides({}, ["train.lr"])
    with pytest.raises(ConfigError, match="lr is not a section"):
        apply_overrides({"train": {"lr": 0.1}}, ["train.lr.x=1"])


def test_missing_recipe_lists_the_bundled_ones():
    with pytest.raises(ConfigError, match=r"recipe nope not found; bundled recipes: .*ucf101_rgb"):
        load_config("nope")


def test_defaults_are_the_papers():
    config = config_from_dict({})
    assert config.data.resolved_new_length() == 1
    assert Config().data.resolved_scales() == (1.0, 0.875, 0.75, 0.66)
    assert config_from_dict(yaml.safe_load("data: {modality: flow}")).data.resolved_scales() == (1.0, 0.875, 0.75)
