"""The embedded Shapes models say when they are out of their depth: words outside their vocabulary are warned about
(one line per text) or refused with --strict-vocab; using one is announced once; the output names the model; a typo
of an embedded name gets a "did you mean"."""

import argparse
import json

from clipblip.cli import EXIT_ERROR, EXIT_OK, main
from clipblip.cli.common import command_run, load_model, report
from clipblip.jobs import Skipped


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def lines_of(err: str, kind: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith(f"clipblip: {kind}:")]


def test_classify_outside_the_vocabulary_warns_per_text_and_names_the_model(image_folder, capsys):
    """The issue's example: neither 'cat' nor 'astronaut' is a Shapes word, so both read as <unk>."""
    code, out, err = run(capsys, "classify", image_folder / "0_red.jpg", "--labels", "cat", "astronaut",
                         "cup of coffee", "--templates", "a photo of a {}.", "--json")
    assert code == EXIT_OK and json.loads(out)["model"] == "shapes-clip"
    warned = lines_of(err, "warning")
    assert len(warned) == 3 and all("shapes-clip's vocabulary" in line for line in warned)
    assert "'a photo of a cat.'" in warned[0] and warned[0].endswith("'cat'")
    assert "'astronaut'" in warned[1] and warned[2].endswith("'cup', 'coffee'")  # "of" is a Shapes word
    assert len(lines_of(err, "note")) == 1 and "Traceback" not in err


def test_known_words_are_silent_and_an_open_vocabulary_never_warns(tiny_clip_dir, image_folder, capsys):
    code, out, err = run(capsys, "classify", image_folder / "0_red.jpg", "--labels", "red circle", "blue square",
                         "--templates", "a photo of a {}.")
    assert code == EXIT_OK and lines_of(err, "warning") == [] and "model: shapes-clip" in err.splitlines()
    code, out, err = run(capsys, "classify", image_folder / "0_red.jpg", "--labels", "cat", "astronaut",
                         "-m", tiny_clip_dir)
    assert code == EXIT_OK and lines_of(err, "warning") == [] and lines_of(err, "note") == []
    assert f"model: {tiny_clip_dir}" in err.splitlines() and out.startswith(str(image_folder / "0_red.jpg"))


def test_strict_vocab_makes_an_unknown_word_a_one_line_error(image_folder, capsys):
    code, out, err = run(capsys, "match", image_folder / "0_red.jpg", "a red circle", "an astronaut",
                         "--strict-vocab", "--json")
    errors = lines_of(err, "error")
    assert code == EXIT_ERROR and out == "" and len(errors) == 1 and "Traceback" not in err
    assert "'an astronaut'" in errors[0] and "shapes-blip's vocabulary" in errors[0] and "'astronaut'" in errors[0]


def test_ask_says_which_words_of_the_question_it_does_not_know(image_folder, capsys):
    code, out, err = run(capsys, "ask", image_folder / "0_red.jpg", "what animal is this?")
    warned = lines_of(err, "warning")
    assert code == EXIT_OK and len(warned) == 1 and warned[0].endswith("'animal', 'this'")
    assert "shapes-blip-vqa's vocabulary" in warned[0] and "model: shapes-blip-vqa" in err.splitlines()


def test_the_embedded_model_note_is_one_stderr_line_once_per_command(capsys):
    args = argparse.Namespace(model="shapes-clip", device="cpu", precision="fp32", threads=0, json=True)
    with command_run():
        load_model(args)
        load_model(args, "shapes-blip")
        report({"results": []}, Skipped(), True, [])
    out, err = capsys.readouterr()
    notes = lines_of(err, "note")
    assert json.loads(out)["model"] == "shapes-clip + shapes-blip"
    assert len(notes) == 1 and "shapes-clip is a small model trained on the generated Shapes world" in notes[0]
    assert "-m PATH" in notes[0] and "Sources clipblip.load accepts" in notes[0]


def test_a_typo_of_an_embedded_name_gets_a_did_you_mean(image_folder, capsys):
    code, out, err = run(capsys, "caption", image_folder / "0_red.jpg", "-m", "shapes-blp")
    errors = lines_of(err, "error")
    assert code == EXIT_ERROR and len(err.splitlines()) == 1 and "Did you mean 'shapes-blip'" in errors[0]


def test_commands_that_load_their_own_models_announce_an_embedded_one_too(image_folder, tmp_path, capsys):
    """index build (and compare, capfilt, serve: they call cli.common.note_embedded with their model names)."""
    code, out, err = run(capsys, "index", "build", image_folder, "--out", tmp_path / "idx", "--json")
    assert code in (EXIT_OK, 3) and len(lines_of(err, "note")) == 1
    assert "shapes-clip is a small model trained on the generated Shapes world" in lines_of(err, "note")[0]
