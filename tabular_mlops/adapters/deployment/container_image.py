"""A bento as a container image, built by the stack's image builder.

``bentoml containerize`` needs a Docker (or BuildKit) engine on the machine
that runs it; a cluster has none to lend, so the image goes through the
stack's image builder instead (Kaniko on prod builds inside the cluster). The
build context is exactly what ``bentoml containerize`` would use: the bento,
its models copied in from the model store, and BentoML's generated
Dockerfile, written without BuildKit-only syntax so that Kaniko can read it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from zenml.container_registries import BaseContainerRegistry
    from zenml.image_builders import BaseImageBuilder, BuildContext


def image_name(registry_uri: str, bento_tag: str) -> str:
    """``<registry>/<bento name>:<bento version>``: one image per bento build."""
    name, _, version = bento_tag.partition(":")
    return f"{registry_uri.rstrip('/')}/{name.replace('_', '-')}:{version or 'latest'}"


@contextlib.contextmanager
def bento_build_context(bento_tag: str) -> Iterator[BuildContext]:
    """The bento's image build context, with its Dockerfile at the root."""
    import bentoml
    from zenml.image_builders import BuildContext

    from tabular_mlops.adapters.compat import bento_containerfile, bento_yaml_through_libyaml

    bento_yaml_through_libyaml()
    bento = bentoml.bentos.get(bento_tag)
    with bento_containerfile(bento) as (root, dockerfile):
        context = BuildContext(root=root)
        context.add_file(dockerfile, "Dockerfile")
        yield context


def build_bento_image(
    bento_tag: str, image_builder: BaseImageBuilder, container_registry: BaseContainerRegistry
) -> str:
    """Build and push the bento's image; returns the pushed reference (a digest when
    the builder reports one)."""
    with bento_build_context(bento_tag) as context:
        return image_builder.build(
            image_name=image_name(container_registry.config.uri, bento_tag),
            build_context=context,
            container_registry=container_registry,
        )
