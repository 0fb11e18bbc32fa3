"""The models shipped inside the package: each loads, has its card, and is small."""

import json

import pytest

import clipblip
import clipblip.cli
from clipblip import catalog

SHIPPED = [name for name in catalog.EMBEDDED if catalog.embedded(name)]


def test_shapes_clip_is_shipped_and_small():
    assert "shapes-clip" in SHIPPED
    total = sum(f.stat().st_size for name in SHIPPED for f in catalog.embedded(name).iterdir())
    assert total <= 30 * 2**20


@pytest.mark.parametrize("name", SHIPPED)
def test_card_says_how_it_was_made(name):
    card = json.loads((catalog.embedded(name) / "card.json").read_text())
    for key in ("command", "seed", "steps", "wall_time_s", "machine", "final_val_metrics", "data"):
        assert card[key] is not None, key
    model = clipblip.load(name)
    assert model.config.family == catalog.EMBEDDED[name] == card["family"]
    assert next(model.parameters()).dtype.is_floating_point


def test_cli_defaults_to_the_embedded_clip(tmp_path, capsys):
    from clipblip.data.shapes import ShapesWorld

    image = tmp_path / "star.png"
    ShapesWorld(0).sample("test", 0, n_objects=1)["image"].save(image)
    assert clipblip.cli.main(["classify", str(image), "--labels", "a circle.", "a star.", "--json"]) == 0
    assert clipblip.cli.parser().parse_args(["classify", "x"]).model == "shapes-clip"
    assert clipblip.cli.parser().parse_args(["caption", "x"]).model == "shapes-blip"
