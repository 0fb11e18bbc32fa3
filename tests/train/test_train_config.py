"""Training settings are typed: a config file or a key=value override is checked against the field's type before
anything (a run folder, a model) is made, in one line naming the key, the value and the type."""

import pytest

from clipblip.cli import main
from clipblip.errors import ClipBlipError
from clipblip.train.config import PRESETS, TrainConfig, resolve


@pytest.mark.parametrize("override, message", [
    ("steps=five", 'training setting steps="five": expected int'),
    ("lr=fast", 'training setting lr="fast": expected float'),
    ("steps=true", "training setting steps=true: expected int"),
    ("compile=1", "training setting compile=1: expected bool"),
    ("shapes=3", "training setting shapes=3: expected dict"),
    ("betas=0.9", "training setting betas=0.9: expected tuple"),
])
def test_an_override_of_the_wrong_type_is_one_line_naming_key_value_and_type(override, message):
    with pytest.raises(ClipBlipError) as e:
        resolve("shapes-clip", None, [override])
    assert str(e.value) == message


def test_the_presets_and_json_spellings_pass():
    for make in PRESETS.values():
        TrainConfig.from_dict(make())
    cfg = resolve("shapes-clip", None, ["lr=1", "betas=[0.9,0.95]", "init=null", "steps=3"])
    assert cfg.lr == 1 and list(cfg.betas) == [0.9, 0.95] and cfg.init is None and cfg.steps == 3


def test_a_config_file_that_is_no_object_is_refused(tmp_path):
    path = tmp_path / "train.json"
    path.write_text("[]")
    with pytest.raises(ClipBlipError, match="a training config is a JSON object of settings, not a list"):
        resolve(None, str(path))


def test_the_cli_makes_nothing_before_the_error(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--preset", "shapes-clip", "steps=five", f"out={tmp_path / 'run'}"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ['clipblip: error: training setting steps="five": expected int']
    assert not (tmp_path / "run").exists()


def test_a_missing_dataset_is_one_line_before_a_run_folder_or_progress_bar(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--preset", "shapes-clip", f"data={tmp_path / 'nosuch.jsonl'}", f"out={out}"]) == 1
    err = capsys.readouterr().err
    assert err.splitlines() == [f"clipblip: error: {tmp_path / 'nosuch.jsonl'}: no such file or directory"]
    assert not out.exists()
