"""Fixtures for the training tests: a toy captioned video set and the tiny model (training_fixtures)."""
import pytest

from training_fixtures import make_tiny_base


@pytest.fixture(scope="session")
def toy_videos(tmp_path_factory):
    from training import synthetic

    root = tmp_path_factory.mktemp("toy_videos")
    synthetic.make_synthetic_set(str(root), videos_per_prompt=1, size=32, n_frames=9, colours=["red", "blue"],
                                 shapes=["circle"], directions=["left", "right"], seed=0)
    return root


@pytest.fixture
def tiny_base():
    return make_tiny_base()
