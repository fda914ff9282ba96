"""A delete of BentoML's store cut short (a Ctrl-C while a deploy pruned it) left a version
directory without its YAML, and BentoML refused to list the store: every later deploy
failed after its switch. Such a directory is removed; one being saved is left alone."""

from __future__ import annotations

import os
import time

from tabular_mlops.adapters.compat import bento_store_dirs
from tabular_mlops.adapters.deployment.packaging import bento_model_name, remove_torn_entries


def test_bentomls_store_directories_are_under_its_home():
    from pathlib import Path

    home = Path(os.path.realpath(os.environ["BENTOML_HOME"]))
    assert bento_store_dirs() == (home / "models", home / "bentos")


def test_a_version_left_without_its_yaml_is_removed_and_one_being_saved_is_not():
    models, bentos = bento_store_dirs()
    name = bento_model_name("torn_model")
    torn, saving = models / name / "torn", bentos / f"{name}_service" / "saving"
    whole = models / name / "whole"
    for folder in (torn, saving, whole):
        folder.mkdir(parents=True)
    (whole / "model.yaml").write_text("name: whole\n")
    an_hour_ago = time.time() - 3600
    for folder in (torn, whole):
        os.utime(folder, (an_hour_ago, an_hour_ago))
    assert remove_torn_entries("torn_model") == [torn]
    assert not torn.exists() and saving.is_dir() and whole.is_dir()
