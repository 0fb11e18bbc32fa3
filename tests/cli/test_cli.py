"""The CLI end to end on a tiny model: outputs, --json, bad files skipped and listed, exit codes."""

import json

import numpy as np
import pytest
from safetensors import safe_open

from clipblip.cli import EXIT_ERROR, EXIT_PARTIAL, main


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_embed_folder_skips_and_lists_bad_files(tiny_clip_dir, image_folder, tmp_path, capsys):
    out_file = tmp_path / "emb.safetensors"
    code, out, err = run(capsys, "embed", "-m", tiny_clip_dir, "--images", image_folder, "--texts", "a", "b c",
                         "-o", out_file, "--json")
    assert code == EXIT_PARTIAL
    report = json.loads(out)
    assert [s["item"].endswith("broken.jpg") for s in report["skipped"]] == [True]
    assert "broken.jpg" in err and "1 input(s) skipped" in err
    with safe_open(str(out_file), "pt") as f:
        assert f.get_tensor("image_features").shape == (6, 16)
        assert f.get_tensor("text_features").shape == (2, 16)
        images = json.loads(f.metadata()["images"])
    assert len(images) == 6 and not any("broken" in p for p in images) and not any("notes" in p for p in images)


def test_embed_npy_writes_rows_and_their_names(tiny_clip_dir, tmp_path, capsys):
    out_file = tmp_path / "texts.npy"
    code, _, _ = run(capsys, "embed", "-m", tiny_clip_dir, "--texts", "x", "y", "z", "-o", out_file)
    assert code == 0
    arr = np.load(out_file)
    assert arr.shape == (3, 16) and np.allclose(np.linalg.norm(arr, axis=1), 1, atol=1e-5)
    assert json.loads(out_file.with_suffix(".json").read_text())["texts"] == ["x", "y", "z"]


def test_classify_json(tiny_clip_dir, image_folder, capsys):
    code, out, _ = run(capsys, "classify", image_folder / "0_red.jpg", image_folder / "1_green.png",
                       "--labels", "red", "green", "blue", "--top-k", "2", "-m", tiny_clip_dir, "--json")
    assert code == 0
    rows = json.loads(out)["results"]
    assert len(rows) == 2 and all(len(r["labels"]) == 2 for r in rows)
    assert all(r["labels"][0]["prob"] >= r["labels"][1]["prob"] for r in rows)


def test_search_text_output(tiny_clip_dir, image_folder, capsys):
    code, out, err = run(capsys, "search", "a red square", "--images", image_folder, "--top-k", "3",
                         "-m", tiny_clip_dir)
    assert code == EXIT_PARTIAL and "broken.jpg" in err
    lines = out.strip().splitlines()
    assert lines[0] == "a red square:" and len(lines) == 4


def test_convert_native_and_hf(tiny_clip_dir, tmp_path, capsys):
    assert run(capsys, "convert", tiny_clip_dir, tmp_path / "hf", "--to", "hf")[0] == 0
    assert (tmp_path / "hf" / "config.json").is_file()
    code, out, _ = run(capsys, "convert", tmp_path / "hf", tmp_path / "native", "--json")
    assert code == 0 and json.loads(out)["format"] == "native"


def test_errors_are_one_line(tmp_path, capsys):
    code, out, err = run(capsys, "classify", tmp_path / "missing.jpg", "--labels", "x", "-m", tmp_path)
    assert code == EXIT_ERROR and err.count("\n") == 1 and err.startswith("clipblip: error:")
    code, _, err = run(capsys, "embed", "-m", "no-such-model-name", "--texts", "x", "-o", tmp_path / "o.npy")
    assert code == EXIT_ERROR and "clipblip models" in err and "Traceback" not in err


def test_models_lists_the_catalog(capsys):
    code, out, _ = run(capsys, "models", "--json", "--family", "clip")
    names = [r["name"] for r in json.loads(out)]
    assert code == 0 and "ViT-B-32/openai" in names and "RN50/openai" in names


def test_usage_error_exit_code(capsys):
    with pytest.raises(SystemExit) as e:
        main(["classify"])
    assert e.value.code == 2


def test_caption_folder_skips_bad_files(tiny_blip_dir, image_folder, capsys):
    code, out, err = run(capsys, "caption", image_folder, "-m", tiny_blip_dir, "--max-new-tokens", "5", "--beams",
                         "2", "--json")
    assert code == EXIT_PARTIAL and "broken.jpg" in err
    rows = json.loads(out)["results"]
    assert len(rows) == 6 and all(isinstance(r["caption"], str) for r in rows)


def test_ask_generates_or_ranks(tiny_blip_dir, image_folder, capsys):
    image = image_folder / "0_red.jpg"
    code, out, _ = run(capsys, "ask", image, "what color?", "-m", tiny_blip_dir, "--json")
    assert code == 0 and isinstance(json.loads(out)["answer"], str)
    code, out, _ = run(capsys, "ask", image, "what color?", "--answers", "red", "green", "blue", "--top-k", "2",
                       "-m", tiny_blip_dir, "--json")
    ranked = json.loads(out)["answers"]
    assert code == 0 and len(ranked) == 2 and ranked[0]["prob"] >= ranked[1]["prob"]


def test_match_and_reranked_search(tiny_blip_dir, image_folder, capsys):
    code, out, _ = run(capsys, "match", image_folder / "0_red.jpg", "a red square", "a cat", "-m", tiny_blip_dir,
                       "--json")
    rows = json.loads(out)["results"]
    assert code == 0 and [r["text"] for r in rows] == ["a red square", "a cat"]
    assert all(0 <= r["match"] <= 1 for r in rows)
    code, out, err = run(capsys, "search", "a red square", "--images", image_folder, "--rerank", "--top-k", "2",
                         "-m", tiny_blip_dir, "--json")
    assert code == EXIT_PARTIAL and len(json.loads(out)["results"][0]["hits"]) == 2


def test_undecodable_argv_bytes_are_replaced_not_a_traceback(tiny_blip_dir, image_folder, capsys):
    """Python hands an argv byte that is not UTF-8 over as a lone surrogate ('\\udcff'); the tokenizers replace it."""
    code, out, err = run(capsys, "match", image_folder / "0_red.jpg", "a red\udcff square", "\udcff", "-m",
                         tiny_blip_dir, "--json")
    assert code == 0 and "Traceback" not in err
    assert [r["text"] for r in json.loads(out)["results"]] == ["a red\udcff square", "\udcff"]


def test_blip_commands_refuse_clip_models(tiny_clip_dir, image_folder, capsys):
    code, _, err = run(capsys, "caption", image_folder / "0_red.jpg", "-m", tiny_clip_dir)
    assert code == EXIT_ERROR and "BLIP" in err


def test_bad_generation_options_are_one_line_errors(tiny_blip_dir, image_folder, capsys):
    code, _, err = run(capsys, "caption", image_folder / "0_red.jpg", "--beams", "0", "-m", tiny_blip_dir)
    assert code == EXIT_ERROR and "num_beams" in err and "Traceback" not in err


def test_rerank_over_only_bad_files_is_a_clear_error(tiny_blip_dir, image_folder, capsys):
    code, _, err = run(capsys, "search", "x", "--images", image_folder / "broken.jpg", "--rerank",
                       "-m", tiny_blip_dir)
    assert code == EXIT_ERROR and "none of the images" in err and "Traceback" not in err
