"""The compare report writer: every number shown, sections omitted when absent, verdicts by rule, safe HTML."""

import copy
import html
import json
import re

import pytest
from PIL import Image

from clipblip.eval import blocks, claims, render, report

EDITS = {"attribute_swap": 0.712, "relation_swap": 0.634, "count_change": 0.556, "color_change": 0.823}


def _timing(median):
    return {"median": median, "min": median * 0.9, "max": median * 1.2, "n": 5, "runs": [median] * 5}


def _results():
    def retr(a):  # distinct recalls per path so a swapped cell would be caught
        return {"t2i": {"r1": a, "r5": a + 0.101, "r10": a + 0.152}, "i2t": {"r1": a + 0.013, "r5": a + 0.114,
                                                                            "r10": a + 0.163}}
    return {
        "meta": {"date": "2025-01-02", "machine": "2-core test box", "data": "shapes-val", "clip": "clip-tiny",
                 "blip": "blip-tiny", "command": "clipblip compare --data shapes-val", "n_images": 321},
        "zero_shot": {"clip": {"shape": 0.987, "color": 0.912, "count": 0.645},
                      "blip_itc": {"shape": 0.943, "color": 0.881, "count": 0.602}},
        "retrieval": {"clip": retr(0.401), "blip_itc": retr(0.422), "blip_itm": retr(0.503)},
        "compositional": {"clip": {"all": 0.581, "per_type": {k: v - 0.111 for k, v in EDITS.items()}, "n": 400},
                          "blip_itc": {"all": 0.597, "per_type": {k: v - 0.052 for k, v in EDITS.items()}, "n": 401},
                          "blip_itm": {"all": 0.768, "per_type": EDITS, "n": 402}},
        "heldout": {"clip": {"compositional": 0.533, "t2i_r1": 0.217},
                    "blip_itc": {"compositional": 0.548, "t2i_r1": 0.228},
                    "blip_itm": {"compositional": 0.691, "t2i_r1": 0.319}},
        "captioning": {"blip": {"bleu4": 0.345, "cider": 1.234, "facts_true": 0.876, "objects_mentioned": 0.931,
                                "n": 123}},
        "vqa": {"blip": {"generate": {"overall": 0.734, "per_type": {"color": 0.812, "count": 0.533}, "n": 210},
                         "rank": {"overall": 0.788, "per_type": {"color": 0.845, "count": 0.612}, "n": 211}}},
        "cost": {"clip": {"params": 151_277_313, "param_bytes": 605_109_252, "peak_activation_mb": 61.25,
                          "flops": {"image": 4_412_000_000, "text": 2_950_000_000, "pair": 7_362_000_000},
                          "encode_image": _timing(0.0051), "encode_text": _timing(0.0021),
                          "query": {"1000": {"itc": _timing(0.0031)}, "10000": {"itc": _timing(0.0043)}},
                          "pair": {"itc": _timing(0.0123)}},
                 "blip": {"params": 223_971_644, "param_bytes": 895_886_576, "peak_activation_mb": 143.25,
                          "flops": {"image": 17_580_000_000, "text": 2_950_000_000, "itm_pair": 3_110_000_000,
                                    "pair": 20_690_000_000},
                          "encode_image": _timing(0.0171), "encode_text": _timing(0.0032),
                          "query": {"1000": {"itc": _timing(0.0035), "itm_16": _timing(0.0451),
                                             "itm_128": _timing(0.3312)},
                                    "10000": {"itc": _timing(0.0047), "itm_16": _timing(0.0461),
                                              "itm_128": _timing(0.3391)}},
                          "pair": {"itc": _timing(0.0193), "itm": _timing(0.0289)}}},
        "capfilt": {"settings": {"n": 3000, "noise": 0.5, "calibration_n": 256, "steps": 500, "batch_size": 64},
                    "threshold": 0.1234, "kept": {"original": 1701, "synthetic": 2502},
                    "dropped": {"original": 1299, "synthetic": 498}, "images_without_captions": 77,
                    "filter": {"all": {"precision": 0.861, "recall": 0.902, "clean_removed": 0.147, "roc_auc": 0.953,
                                       "n": 1503},
                               "wrong": {"precision": 0.771, "recall": 0.993, "clean_removed": 0.147,
                                         "roc_auc": 0.998, "n": 748,
                                         "ci": {"precision": [0.743, 0.797], "recall": [0.984, 0.997],
                                                "clean_removed": [0.128, 0.168]}}},
                    "scores": {"noisy": {"t2i_r1": 0.104, "zs_shape": 0.351, "zs_color": 0.602, "zs_count": 0.412},
                               "capfilt": {"t2i_r1": 0.156, "zs_shape": 0.433, "zs_color": 0.784, "zs_count": 0.455},
                               "clean": {"t2i_r1": 0.181, "zs_shape": 0.472, "zs_color": 0.823, "zs_count": 0.468}},
                    "gap_closed": {"t2i_r1": 0.675, "zs_shape": 0.678, "zs_color": 0.824, "zs_count": 0.768},
                    "ci": {"capfilt": {"t2i_r1": [0.126, 0.191]},
                           "gap_closed": {"zs_color": [0.612, 1.043], "zs_shape": None}},
                    "blip": {"r1_gain": 0.052, "gap_closed": 0.675, "ci": {"r1_gain": [0.021, 0.083]}},
                    "tests": [{"metric": "t2i_r1", "against": "noisy", "n": 500, "diff": 0.052, "only_other": 12,
                               "only_capfilt": 38, "p": 0.00026, "p_holm": 0.00052},
                              {"metric": "t2i_r1", "against": "clean", "n": 500, "diff": -0.025, "only_other": 20,
                               "only_capfilt": 7, "p": 0.019, "p_holm": 0.019}]},
        "targets": [{"name": "BLIP ITM beats CLIP on the probe", "target": "≥ 70%", "value": 0.768, "met": True,
                     "ci": [0.731, 0.801]},
                    {"name": "CLIP encodes fast", "target": "> 1000 images/s", "value": 812.4, "met": False},
                    {"name": "ITM minus CLIP", "target": ">= 15 points", "value": 0.187, "met": True},
                    {"name": "VQA on real data", "target": "≥ 60%", "value": None, "met": None}],
        "examples": [{"id": "img7", "image": "examples/img7.png", "truth": "a red square left of a blue circle",
                      "caption": "a red square and <script>alert(1)</script> a circle",
                      "vqa": [{"question": "what color is the square?", "answer": "red", "truth": "red"}],
                      "retrieval": {"query": "a red square", "top": ["img7", "img3", "img9"]}}],
    }


def _expected(key, v):
    """The report's formatting, restated independently: fractions as percentages with one decimal."""
    if key in ("n", "n_images"):
        return str(v)
    if key == "bleu4":
        return f"{100 * v:.1f}"
    if key == "cider":
        return f"{v:.3f}"
    if key == "params":
        return f"{v / 1e6:.1f}M"
    if key == "peak_activation_mb":
        return f"{v:.1f} MB"
    if key == "param_bytes":
        return f"{v / 2**20:.1f} MB"
    if key in ("image", "text", "itm_pair", "pair"):  # the FLOP counts
        return f"{v / 1e6:.1f} MFLOP"
    if key == "timing":
        return " (".join(f"{v[k] * 1e3:.3g} ms" for k in ("median", "min")) + f"–{v['max'] * 1e3:.3g} ms)"
    if key.endswith("_per_s"):
        return f"{v:.1f}/s"
    return f"{100 * v:.1f}%"


def _numbers(d, key=""):
    if isinstance(d, dict) and "median" in d:
        yield "timing", d
    elif isinstance(d, dict):
        for k, v in d.items():
            yield from _numbers(v, k)
    elif isinstance(d, (int, float)) and not isinstance(d, bool):
        yield key, d


def _write(tmp_path, results):
    (tmp_path / "examples").mkdir(exist_ok=True)
    Image.new("RGB", (32, 32), (200, 30, 30)).save(tmp_path / "examples" / "img7.png")
    return report.write_report(results, tmp_path)


@pytest.fixture
def written(tmp_path):
    results = _results()
    paths = _write(tmp_path, results)
    return results, paths, paths["md"].read_text(), paths["html"].read_text()


def test_every_section_heading_is_in_both_documents(written):
    _, _, md, page = written
    for title in [blocks.TITLE, *blocks.SECTIONS.values()]:
        assert title in md
        assert html.escape(title) in page


def test_every_number_of_results_appears_formatted(written):
    results, _, md, _ = written
    for section in ("meta", "zero_shot", "retrieval", "compositional", "heldout", "captioning", "vqa", "cost"):
        for key, v in _numbers(results[section]):
            assert _expected(key, v) in md, (section, key, v)
    for key, v in _numbers({k: results["capfilt"][k] for k in ("scores", "gap_closed")}):
        assert _expected(key, v) in md, ("capfilt", key, v)
    # the filter's removal quality per noise type, its shares with their intervals
    assert "| wrong | 77.1% (74.3%–79.7%) | 99.3% (98.4%–99.7%) | 14.7% (12.8%–16.8%) | 0.998 | 748 |" in md
    assert "| capfilt | 15.6% (12.6%–19.1%) | 43.3% | 78.4% | 45.5% |" in md  # a score, and one without an interval
    # the gap: with its interval, unbounded (its interval sought, and None), and without an interval tree
    assert "| gap closed | 67.5% | 67.8% (unbounded) | 82.4% (61.2%–104.3%) | 76.8% |" in md
    assert "gain of CapFilt's corpus over the noisy one: +5.2% (+2.1%–+8.3%)" in md
    assert "| noisy corpus | +5.2%, p = 0.00052 | — | — | — |" in md  # the Holm-corrected p
    assert "| clean corpus | -2.5%, p = 0.019 | — | — | — |" in md
    # the claims row: R@1 gain (signed, with its interval) and the share of the gap closed; the gain's interval
    # lies above 0
    assert "+5.2% (+2.1%–+8.3%) / 67.5% | interval above 0 | supported |" in md
    assert "98.7%" in md and "34.5" in md and "1.234" in md and "151.3M" in md
    assert "| 76.8% (73.1%–80.1%) | met |" in md and "| 812.4 | missed |" in md  # "%" goal: a percentage
    assert "| 18.7% | met |" in md and "| — | not measured |" in md  # "points" is a percentage too


def test_html_is_self_contained_and_embeds_images(written):
    _, paths, _, page = written
    assert 'src="http' not in page and "href=" not in page and "<link" not in page
    assert "@import" not in page and "url(" not in page
    srcs = re.findall(r'src="([^"]*)"', page)
    assert len(srcs) == 1 + len([k for k in paths if k.startswith("plot")])
    assert all(s.startswith("data:image/png;base64,") for s in srcs)


def test_caption_with_script_is_escaped(written):
    _, _, md, page = written
    assert "<script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "\\<script>" in md and not re.search(r"(?<!\\)<script>", md)  # backslash-escaped in markdown


def test_results_json_round_trips(written):
    results, paths, _, _ = written
    assert json.loads(paths["json"].read_text()) == results


def test_plots_exist_and_are_pngs(written):
    _, paths, md, _ = written
    for name in ("plot_tasks", "plot_compositional"):
        with Image.open(paths[name]) as im:
            assert im.format == "PNG" and im.size[0] > 100
        assert f"]({paths[name].name})" in md
    assert "](examples/img7.png)" in md


def test_examples_section_shows_caption_vqa_and_retrieval(written):
    _, _, md, _ = written
    assert "a red square left of a blue circle" in md
    assert "red (truth: red) ✓" in md
    assert "img7, img3, img9" in md


def test_clip_only_results_omit_blip_sections(tmp_path):
    full = _results()
    results = {"meta": {**full["meta"], "blip": None}}
    for task in ("zero_shot", "retrieval", "compositional", "heldout", "cost"):
        results[task] = {"clip": full[task]["clip"]}
    paths = _write(tmp_path, results)
    md = paths["md"].read_text()
    for section in ("captioning", "vqa", "examples", "targets"):
        assert "## " + blocks.SECTIONS[section] not in md
    assert "## " + blocks.SECTIONS["zero_shot"] in md
    assert "| BLIP ITC |" not in md and "| BLIP ITM rerank |" not in md
    assert "BLIP: none" in md
    assert all(c["verdict"] == "not measured" for c in claims.evaluate_claims(results))
    zero_shot = _claim(results, "zero-shot")
    assert zero_shot["clip"] == "98.7% / 91.2% / 64.5%" and zero_shot["blip"] == "not measured"
    assert "not measured" in md
    with Image.open(paths["plot_compositional"]) as im:
        assert im.format == "PNG"
    assert "BLIP" in report.summary_table(results).splitlines()[0]


def _claim(results, words):
    return next(c for c in claims.evaluate_claims(results) if words in c["claim"])


def test_claims_without_numbers_say_not_measured():
    results = _results()
    del results["compositional"]["blip_itm"]
    row = _claim(results, "compositional hard negatives")
    assert row["verdict"] == "not measured" and row["blip"] == "not measured"
    assert _claim(results, "CapFilt")["verdict"] == "supported"
    del results["capfilt"]  # compare without --capfilt
    assert _claim(results, "CapFilt")["verdict"] == "not measured"
    del results["vqa"]
    assert _claim(results, "answers visual questions")["verdict"] == "not measured"


def test_summary_table_has_key_numbers():
    text = report.summary_table(_results())
    lines = text.splitlines()
    assert lines[0].split() == ["measure", "CLIP", "BLIP"]
    assert len({len(line) for line in lines}) == 1  # aligned columns
    for needle in ("98.7%", "94.3%", "50.3%", "76.8%", "73.4%", "5.1 ms (4.59 ms–6.12 ms)", "224.0M"):
        assert needle in text


def test_meta_is_required(tmp_path):
    with pytest.raises(ValueError, match="meta"):
        report.write_report({}, tmp_path)


def test_copy_is_not_mutated(tmp_path):
    results = _results()
    before = copy.deepcopy(results)
    _write(tmp_path, results)
    assert results == before


def test_each_block_type_renders_escaped_in_both_formats(tmp_path):
    Image.new("RGB", (4, 4)).save(tmp_path / "a.png")
    doc = [blocks.Heading("T <1>", 1), blocks.Heading("Sub", 3), blocks.Paragraph("a\nb <i>"), blocks.Code("x < y"),
           blocks.Table(["h|1", "h2"], [["a|b", 1.5]]), blocks.Image("a.png", 'alt "q"', "plot"),
           blocks.Image("gone.png", "x", "example")]
    assert render.to_markdown(doc).split("\n\n") == [
        "# T \\<1>", "### Sub", "a b \\<i>", "```\nx < y\n```", "| h\\|1 | h2 |\n|---|---|\n| a\\|b | 1.5 |",
        '![alt "q"](a.png)', "![x](gone.png)\n"]
    body = render.to_html(doc, tmp_path).split("<body>\n")[1].split("\n")
    assert body[:4] == ["<h1>T &lt;1&gt;</h1>", "<h3>Sub</h3>", "<p>a", "b &lt;i&gt;</p>"]
    assert body[4:6] == ["<pre><code>x &lt; y</code></pre>",
                         "<table><thead><tr><th>h|1</th><th>h2</th></tr></thead><tbody><tr><td>a|b</td><td>1.5</td>"
                         "</tr></tbody></table>"]
    assert body[6].startswith('<img class="plot" alt="alt &quot;q&quot;" src="data:image/png;base64,')
    assert body[7:] == ["<p>(image missing: gone.png)</p>", "</body></html>", ""]


@pytest.mark.parametrize("to_text", [render.to_markdown, lambda doc: render.to_html(doc, ".")])
def test_a_block_that_is_not_a_block_type_is_an_error_not_dropped(to_text):
    with pytest.raises(TypeError, match="not a report block"):
        to_text([blocks.Paragraph("kept"), ("p", "an old tuple block")])


def test_the_examples_are_headed_pictured_and_tabled():
    results = _results()
    doc = blocks.report_blocks(results, results["examples"], {})
    start = doc.index(blocks.Heading(blocks.SECTIONS["examples"]))
    assert doc[start + 1:start + 3] == [blocks.Heading("Example img7", 3),
                                        blocks.Image("examples/img7.png", "img7", "example")]
    assert doc[start + 3].rows[0] == ["ground truth", "a red square left of a blue circle"]


def test_a_failed_rewrite_leaves_the_previous_report_whole(tmp_path):
    paths = _write(tmp_path, _results())
    before = {k: paths[k].read_bytes() for k in ("json", "md", "html")}
    results = _results()
    results["meta"]["data"] = "shapes-\udcff"  # a folder name read with surrogateescape: not encodable as UTF-8
    with pytest.raises(UnicodeEncodeError):
        _write(tmp_path, results)
    assert {k: paths[k].read_bytes() for k in before} == before
    assert not list(tmp_path.glob(".*.tmp"))


def test_verdict_lines_give_each_measured_claim_its_verdict():
    results = _results()
    del results["capfilt"]
    lines = report.verdict_lines(results).splitlines()
    assert "  BLIP is the bigger model (encoders + fusion + decoder): supported" in lines  # counts: exact
    # every claim but CapFilt's (deleted above) and the binding experiment's (not in these results)
    assert len(lines) == len(claims.CLAIMS) - 2 and not any("CapFilt" in line for line in lines)
