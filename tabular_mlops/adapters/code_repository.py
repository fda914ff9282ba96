"""This checkout as a ZenML code repository, so every run records the commit it ran.

ZenML records a run's commit (the dashboard's "Repository / Commit") only when
a registered code repository recognises the source root. Its own flavors need
a GitHub or GitLab remote and an API token; a clone on a laptop, or one with
no remote at all, has neither. :class:`GitCheckout` recognises any git work
tree. It never serves code downloads (``has_local_changes`` is always true),
so remote orchestrators keep shipping code in their images as before; it is
registered only on stacks whose orchestrator runs here (``stacks.activate``).
A checkout with uncommitted changes records no commit (ZenML says so in a
warning): the commit would not describe the code that ran.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from zenml.code_repositories import BaseCodeRepository, LocalRepositoryContext

if TYPE_CHECKING:
    from git.repo.base import Repo
    from zenml.client import Client

logger = logging.getLogger(__name__)

#: the name it is registered under, in each environment's project
NAME = "this-checkout"


class GitCheckout(BaseCodeRepository):
    """Any local git work tree; records commits, never downloads."""

    def login(self) -> None:
        """Nothing to log in to: the repository is the local work tree."""

    def download_files(self, commit: str, directory: str, repo_sub_directory: str | None) -> None:
        raise RuntimeError(
            f"code repository '{NAME}' only records commits of the local checkout; "
            "pipelines on remote orchestrators ship their code in the image"
        )

    def get_local_context(self, path: str) -> LocalRepositoryContext | None:
        try:
            from git.exc import InvalidGitRepositoryError, NoSuchPathError
            from git.repo.base import Repo
        except ImportError:  # no git executable on this machine
            return None
        try:
            return CheckoutContext(self, Repo(path, search_parent_directories=True))
        except (InvalidGitRepositoryError, NoSuchPathError):
            return None


class CheckoutContext(LocalRepositoryContext):
    def __init__(self, code_repository: BaseCodeRepository, repo: Repo) -> None:
        super().__init__(code_repository=code_repository)
        self.repo = repo

    @property
    def root(self) -> str:
        return str(self.repo.working_dir)

    @property
    def is_dirty(self) -> bool:
        return self.repo.is_dirty(untracked_files=True)

    @property
    def has_local_changes(self) -> bool:
        """Always: nothing can download this checkout's commits from elsewhere."""
        return True

    @property
    def current_commit(self) -> str:
        return str(self.repo.head.object.hexsha)


def register(client: Client) -> None:
    """Register this checkout in the active project, once."""
    from zenml.config.source import Source
    from zenml.exceptions import EntityExistsError

    try:
        client.get_code_repository(NAME)
    except KeyError:
        try:
            client.create_code_repository(
                name=NAME,
                config={},
                source=Source.from_import_path(f"{__name__}.{GitCheckout.__name__}"),
                description="the local git checkout: runs record the commit they ran",
            )
        except EntityExistsError:  # another command registered it a moment ago
            return
        logger.info("registered code repository '%s'", NAME)


def forget_cached() -> None:
    """Make ZenML look for the code repository again.

    ZenML caches its answer per path for the whole process, the first time it resolves
    a source (registering the stack's flavors does): "none here" before this checkout
    was registered, so the first run of a new store recorded no commit; or a repository
    of the project active then, which a run in another project then names and fails
    on ("code repository ... not found in the project"). Called on every stack
    activation."""
    from tabular_mlops.adapters.compat import forget_code_repositories

    forget_code_repositories()
