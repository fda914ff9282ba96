from __future__ import annotations

from pathlib import Path

import pytest

from tabular_mlops.adapters.config_files import (
    ConfigError,
    apply_overrides,
    deep_merge,
    load_environment,
    load_run_config,
    read_yaml,
    validate,
)
from tabular_mlops.adapters.paths import CONFIG_DIR as CONFIGS
from tabular_mlops.core.config import DataSourceConfig, EnvironmentConfig, TrainingRunConfig


def test_deep_merge_merges_mappings_and_replaces_the_rest():
    base = {"a": {"b": 1, "c": [1, 2]}, "d": 1}
    assert deep_merge(base, {"a": {"c": [3]}, "e": 2}) == {"a": {"b": 1, "c": [3]}, "d": 1, "e": 2}
    assert base == {"a": {"b": 1, "c": [1, 2]}, "d": 1}


def test_overrides_parse_yaml_values():
    data = apply_overrides({}, ["parameters.split.test_size=0.3", "model.tags=[a, b]"])
    assert data == {"parameters": {"split": {"test_size": 0.3}}, "model": {"tags": ["a", "b"]}}


@pytest.mark.parametrize("bad", ["no-equals-sign", "=1"])
def test_malformed_override_names_the_flag(bad):
    with pytest.raises(ConfigError, match=f"--set '{bad}': expected KEY.PATH=VALUE"):
        apply_overrides({}, [bad])


def test_every_shipped_config_validates():
    for path in sorted((CONFIGS / "environments").glob("*.yaml")):
        load_environment(path.stem)
    dev = load_environment("dev")
    config = load_run_config(TrainingRunConfig, CONFIGS / "training.yaml", dev)
    assert config.model.name == "tabular_classifier"


def test_misspelt_key_is_named_with_its_file_and_path():
    dev = load_environment("dev")
    with pytest.raises(ConfigError) as error:
        load_run_config(
            TrainingRunConfig, CONFIGS / "training.yaml", dev, ["parameters.split.test_sise=0.3"]
        )
    message = str(error.value)
    assert "training.yaml" in message
    assert "parameters.split.test_sise: unknown key (misspelt?)" in message


def test_out_of_range_value_shows_the_value():
    with pytest.raises(
        ConfigError, match=r"parameters.split.test_size: .*less than 1.*\(got 1.5\)"
    ):
        validate(
            TrainingRunConfig,
            {"model": {"name": "m"}, "parameters": {"split": {"test_size": 1.5}}},
            "x.yaml",
        )


def test_unknown_metric_in_gate_is_rejected():
    with pytest.raises(ConfigError, match=r"min_metrics: .*unknown metric\(s\) \['acuracy'\]"):
        validate(
            TrainingRunConfig,
            {"model": {"name": "m"}, "parameters": {"promotion": {"min_metrics": {"acuracy": 1}}}},
            "x.yaml",
        )


def test_file_source_needs_a_csv_or_parquet_path():
    with pytest.raises(ValueError, match="needs 'path'"):
        DataSourceConfig(source="file")
    with pytest.raises(ValueError, match=r"suffix '\.xlsx'"):
        DataSourceConfig(source="file", path=Path("data.xlsx"))


def test_unknown_environment_lists_the_known_ones():
    with pytest.raises(ConfigError, match=r"unknown environment 'qa'.*available: .*dev"):
        load_environment("qa")


def test_environment_with_misspelt_component_type(tmp_path):
    path = tmp_path / "env.yaml"
    path.write_text(
        "stack:\n  name: x\n  components:\n    orchestrater: {name: o, flavor: local}\n"
    )
    with pytest.raises(ConfigError) as error:
        validate(EnvironmentConfig, read_yaml(path), str(path))
    assert "stack.components.orchestrater: unknown key" in str(error.value)
    assert "stack.components.orchestrator: Field required" in str(error.value)


def test_yaml_that_is_not_a_mapping(tmp_path):
    path = tmp_path / "list.yaml"
    path.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="the top level must be a mapping"):
        read_yaml(path)


def test_override_replaces_rather_than_merges():
    data = {"training": {"params": {"C": 1.0}, "estimator": "x"}}
    assert apply_overrides(data, ["training.params={}"]) == {
        "training": {"params": {}, "estimator": "x"}
    }
    assert data == {"training": {"params": {"C": 1.0}, "estimator": "x"}}


def test_an_environment_overlays_its_pipeline_whatever_the_config_file_is_called(tmp_path):
    mine = tmp_path / "my_training.yaml"
    mine.write_text((CONFIGS / "training.yaml").read_text())
    config = load_run_config(TrainingRunConfig, mine, load_environment("prod"))
    assert config.parameters.promotion.min_metrics == {"accuracy": 0.9, "roc_auc": 0.95}
    assert config.parameters.promotion.max_regression == 0.0


def test_a_misspelt_pipeline_in_overrides_is_an_error_naming_file_and_key(tmp_path):
    env = tmp_path / "qa.yaml"
    prod = read_yaml(CONFIGS / "environments" / "prod.yaml")
    prod["overrides"]["trainig"] = prod["overrides"].pop("training")
    import yaml

    env.write_text(yaml.safe_dump(prod))
    with pytest.raises(ConfigError) as error:
        load_environment(str(env))
    assert str(env) in str(error.value)
    assert "overrides.trainig: unknown key (misspelt?)" in str(error.value)


def test_a_misspelt_key_inside_an_overlay_is_an_error(tmp_path):
    environment = EnvironmentConfig.model_validate(
        {
            **read_yaml(CONFIGS / "environments" / "dev.yaml"),
            "overrides": {"training": {"parameters": {"promotion": {"max_regresion": 0}}}},
        }
    )
    with pytest.raises(ConfigError) as error:
        load_run_config(TrainingRunConfig, CONFIGS / "training.yaml", environment)
    assert "with the environment's overrides.training applied" in str(error.value)
    assert "parameters.promotion.max_regresion: unknown key (misspelt?)" in str(error.value)


def test_state_paths_are_taken_from_the_checkout_and_user_files_as_given():
    from tabular_mlops.adapters.config_files import anchor_paths, local_serving
    from tabular_mlops.adapters.paths import LOCAL_DIR

    training = anchor_paths(
        TrainingRunConfig.model_validate(
            {"model": {"name": "m"}, "parameters": {"data": {"source": "file", "path": "d.csv"}}}
        )
    )
    assert training.parameters.data.path == Path("d.csv")
    local = local_serving({"state_dir": ".local/serving"}, "dev.yaml")
    assert local.state_dir == LOCAL_DIR / "serving"
    assert local.inference_log_dir == LOCAL_DIR / "inference_log"


def test_an_environment_written_for_earlier_versions_is_told_to_declare_a_model_deployer(
    tmp_path,
):
    import yaml

    from tabular_mlops.adapters.config_files import load_environment

    data = read_yaml(CONFIGS / "environments" / "dev.yaml")
    components = data["stack"]["components"]
    components["deployer"] = components.pop("model_deployer")
    path = tmp_path / "old.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError) as error:
        load_environment(str(path))
    message = str(error.value)
    assert f"{path}: invalid config" in message and "stack.components: 'deployer' no" in message
    assert "flavor: tabular_local" in message and "(got" not in message


def test_a_smoke_test_larger_than_one_request_allows_is_refused_naming_both_keys():
    """The smoke test sends its rows in one request: more of them than `max_batch_rows`
    failed every deploy at the smoke test, after the build and the start."""
    from tabular_mlops.core.config import DeploymentRunConfig

    dev = load_environment("dev")
    with pytest.raises(ConfigError) as error:
        load_run_config(
            DeploymentRunConfig, CONFIGS / "deployment.yaml", dev,
            ["parameters.serving.max_batch_rows=5"],
        )  # fmt: skip
    message = str(error.value)
    assert "deployment.yaml" in message and "parameters.serving" in message, message
    assert "smoke_rows (25) is more than max_batch_rows (5)" in message, message


def test_an_environment_whose_stack_is_named_otherwise_than_its_file_is_refused(tmp_path):
    """Its steps record under the stack's name, its commands under the file's: a copy of
    dev.yaml saved as laptop.yaml split the audit trail in two."""
    import yaml

    from tabular_mlops.adapters.config_files import ENVIRONMENTS_DIR, ConfigError, load_environment

    laptop = tmp_path / "laptop.yaml"
    laptop.write_text((ENVIRONMENTS_DIR / "dev.yaml").read_text())
    with pytest.raises(ConfigError) as refused:
        load_environment(str(laptop))
    assert str(refused.value) == (
        f"{laptop}: stack.name: 'dev' is not the file's name 'laptop': an environment has one "
        "name (its steps record under the stack's, its commands under the file's); rename "
        "the stack or the file"
    )
    config = yaml.safe_load(laptop.read_text())
    config["stack"]["name"] = "laptop"
    laptop.write_text(yaml.safe_dump(config))
    assert load_environment(str(laptop)).stack.name == "laptop"
