import pytest
from fastapi.testclient import TestClient


@pytest.fixture(scope="session")
def shapes_dir(tmp_path_factory):
    """Six generated Shapes scenes (64 px PNGs) with the caption each was drawn from."""
    from clipblip.data.shapes import ShapesWorld

    d = tmp_path_factory.mktemp("shapes")
    world = ShapesWorld(seed=0)
    for i in range(6):
        world.sample("test", i)["image"].save(d / f"scene{i}.png")
    return d


@pytest.fixture(scope="session")
def index_dir(shapes_dir, tmp_path_factory):
    from clipblip.index import build

    out = tmp_path_factory.mktemp("index") / "idx"
    build(shapes_dir, out, model="shapes-clip")
    return out


@pytest.fixture(scope="session")
def models(index_dir):
    from clipblip.serve.work import load_models

    return load_models(None, "shapes-blip", "shapes-blip-vqa", str(index_dir))


@pytest.fixture
def client(models):
    """A factory: a TestClient over a fresh app (its own batcher and metrics) with the given settings."""
    from clipblip.serve.app import create_app

    opened = []

    def make(**settings):
        c = TestClient(create_app(models, **settings))
        opened.append(c.__enter__())
        return c

    yield make
    for c in opened:
        c.__exit__(None, None, None)


@pytest.fixture(scope="session")
def uploads(shapes_dir):
    """The Shapes scenes as httpx upload tuples (name, bytes, content type), in file order."""
    return [(p.name, p.read_bytes(), "image/png") for p in sorted(shapes_dir.glob("*.png"))]
