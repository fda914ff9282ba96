"""ZenML's private symbols this project uses (tabular_mlops/adapters/zenml_compat.py): an
upgrade that moves or renames one fails here, by name."""

from __future__ import annotations


def test_the_dynamic_run_context_is_where_it_was():
    from zenml.execution.pipeline.dynamic.run_context import DynamicPipelineRunContext

    assert DynamicPipelineRunContext.get() is None  # outside any run
    assert isinstance(DynamicPipelineRunContext.run, property)


def test_the_global_config_singletons_can_be_reset():
    from zenml.client import Client
    from zenml.config.global_config import GlobalConfiguration
    from zenml.constants import ENV_ZENML_CONFIG_PATH
    from zenml.utils.io_utils import get_global_config_directory

    assert callable(GlobalConfiguration._reset_instance)
    assert callable(Client._reset_instance)
    assert ENV_ZENML_CONFIG_PATH == "ZENML_CONFIG_PATH"
    assert get_global_config_directory()


def test_outside_a_dynamic_run_there_is_no_run_name():
    from tabular_mlops.adapters.zenml_compat import dynamic_run_name

    assert dynamic_run_name() is None


def test_the_stack_cache_is_where_it_was():
    from zenml.stack import stack

    assert isinstance(stack._STACK_CACHE, dict)
