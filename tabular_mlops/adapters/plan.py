"""Compile a pipeline for the active stack without running it: the `--dry-run` plan.

It goes as far as ZenML goes before it builds images or submits anything:
the snapshot (every step's resolved configuration and settings) and the pip
requirements the stack's image builder would install.
"""

from __future__ import annotations

import json
from typing import Any


def dry_run_plan(pipeline: Any, **parameters: Any) -> dict[str, Any]:
    from zenml.client import Client
    from zenml.config import DockerSettings
    from zenml.utils.pipeline_docker_image_builder import PipelineDockerImageBuilder

    from tabular_mlops.adapters.compat import compile_pipeline

    pipeline.prepare(**parameters)
    snapshot, schedule = compile_pipeline(pipeline)
    stack = Client().active_stack
    docker = snapshot.pipeline_configuration.settings.get("docker")
    docker_settings = DockerSettings.model_validate(docker.model_dump() if docker else {})
    requirements = PipelineDockerImageBuilder.gather_requirements_files(
        docker_settings, stack, log=False
    )
    return json.loads(
        json.dumps(
            {
                "pipeline": snapshot.pipeline_configuration.name,
                "stack": {
                    "name": stack.name,
                    "components": {
                        kind.value: components[0].flavor_name
                        for kind, components in Client().active_stack_model.components.items()
                    },
                    "needs_images": stack.orchestrator.flavor != "local",
                },
                "schedule": schedule.cron_expression if schedule else None,
                "docker": {
                    "settings": docker_settings.model_dump(exclude_defaults=True),
                    "requirements_files": {
                        name: [
                            line.strip()
                            for line in content.splitlines()
                            if line.strip() and not line.strip().startswith("#")
                        ]
                        for name, content, _ in requirements
                    },
                },
                "steps": {
                    name: {
                        "settings": {
                            key: value.model_dump(exclude_defaults=True)
                            for key, value in step.config.settings.items()
                        },
                        "parameters": step.config.parameters,
                        "experiment_tracker": step.config.experiment_tracker,
                        "cache": step.config.enable_cache,
                        "upstream": step.spec.upstream_steps,
                    }
                    for name, step in snapshot.step_configurations.items()
                },
            },
            default=str,
        )
    )  # plain data: parameters hold paths and pydantic values
