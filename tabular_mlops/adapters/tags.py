"""ZenML tags by exact name, safe against a tag deleted at the same moment.

``Client.get_tag(name)`` (and ``delete_tag(name)``, which calls it) counts the matches,
then fetches them, in two queries: a tag deleted between the two left a page of total 1
and no items, which it indexed (IndexError; seen in CI when a promotion lock was
released while a waiter looked at it). These read the items alone and delete by id.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from zenml.client import Client
    from zenml.models import TagResponse


def find_tag(client: Client, name: str) -> TagResponse | None:
    """The tag of exactly that name, or None."""
    return next((tag for tag in client.list_tags(name=name).items if tag.name == name), None)


def delete_tag(client: Client, name: str) -> None:
    """Delete the tag of that name if it is still there (another may be deleting it)."""
    found = find_tag(client, name)
    if found is not None:
        with contextlib.suppress(KeyError):
            client.delete_tag(found.id)
