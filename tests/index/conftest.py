import pytest
from index_helpers import write_shapes


@pytest.fixture(scope="session")
def clip():
    import clipblip

    return clipblip.load("shapes-clip")


@pytest.fixture
def shapes(tmp_path):
    """A folder of 20 Shapes scenes with captions, plus a corrupt PNG."""
    folder = tmp_path / "images"
    write_shapes(folder, 0, 20)
    (folder / "broken.png").write_bytes(b"not a png")
    return folder
