"""Plots and ``darkflow report`` on a hand-written scores file, a real scan of it and a fake run."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import h5py
import numpy as np
import pytest

from darkflow.analysis import plots
from darkflow.analysis.report import ReportConfig, metrics_table, report
from darkflow.analysis.scan import ScanConfig, scan
from darkflow.cli import main
from darkflow.errors import ConfigError, InputError

ROOT = Path(__file__).resolve().parents[2]


def _write_scores(path: Path) -> Path:
    rng = np.random.default_rng(3)
    with h5py.File(path, "w") as handle:
        handle.attrs["default_score"] = "total"
        sm_names = ["qcd", "ttbar", "wjets"]
        groups = {"sm": (4000, 0.0, sm_names), "sm_cal": (2500, 0.0, sm_names), "sm_test": (2500, 0.0, sm_names),
                  "zprime": (500, 2.0, ["zprime"]), "monojet": (500, 1.0, ["monojet"])}
        for label, (n, shift, names) in groups.items():
            g = handle.create_group(label)
            total = rng.normal(shift, 1.0, n)
            g["total"] = total
            g["reco"] = total + rng.normal(0, 0.1, n)
            g["weight"] = rng.uniform(0.5, 1.5, n)
            g["event_id"] = np.arange(n)
            g["process"] = rng.integers(0, len(names), n)
            g["split"] = np.where(np.arange(n) % 2 == 0, 0, 1) if label == "sm" else np.full(n, -1)
            g.attrs["process_names"] = json.dumps(names)
            g.attrs["source"] = str(path.parent / f"{label}.h5")
    return path


@pytest.fixture(scope="module")
def scanned(tmp_path_factory) -> Path:
    """The scores file and its scan (with plots), made once; each test gets a copy (:func:`inputs`)."""
    folder = tmp_path_factory.mktemp("scanned")
    scores = _write_scores(folder / "scores.h5")
    scan(ScanConfig(scores=scores, background="sm_test", calibration="sm_cal", out=folder / "scan"))
    return folder


@pytest.fixture
def inputs(tmp_path: Path, scanned: Path) -> dict[str, Path]:
    import shutil

    scores = Path(shutil.copy2(scanned / "scores.h5", tmp_path / "scores.h5"))
    shutil.copytree(scanned / "scan", tmp_path / "scan")
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("data: sm.h5\nmodel:\n  kind: vae\n  latent: 4\ntraining:\n  epochs: 3\n")
    (run / "metrics.csv").write_text("epoch,seconds,train_loss,val_loss,val_reco,val_kl,val_latent_nll\n"
                                     "0,0.1,3.0,2.8,2.5,0.3,5.0\n1,0.2,2.5,2.4,2.2,0.2,5.0\n"
                                     "2,0.3,2.2,2.3,2.1,0.2,5.0\n")
    return {"scores": scores, "scan": tmp_path / "scan", "run": run, "tmp": tmp_path}


def _check_png(path: Path) -> None:
    import matplotlib.image as mpimg

    assert path.is_file() and path.stat().st_size > 5000, path
    pixels = mpimg.imread(path)
    assert pixels.ndim == 3 and pixels.shape[0] > 200 and pixels.shape[1] > 200
    assert float(pixels[..., :3].var()) > 1e-3, f"{path} looks blank"


class _Strict(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.images: list[str] = []
        self.tags: set[str] = set()

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        if tag == "img":
            self.images.append(dict(attrs)["src"])
        elif tag not in ("meta", "br"):
            self.stack.append(tag)

    def handle_endtag(self, tag):
        assert self.stack and self.stack[-1] == tag, f"unbalanced </{tag}> (open: {self.stack})"
        self.stack.pop()


def test_each_plot_is_written_in_png_and_pdf(inputs, tmp_path):
    from darkflow.analysis.thresholds import read_scores

    options = plots.PlotOptions()
    scores = read_scores(inputs["scores"])
    rows = plots.read_scan(inputs["scan"] / "scan.csv")
    out = tmp_path / "plots"
    test = scores.sample("sm_test")
    signals = {k: v for k, v in scores.samples.items() if not k.startswith("sm")}
    written = (plots.score_distributions(test, signals, "total", out, options)
               + plots.roc(test, signals, "total", out, options)
               + plots.scan_curves(rows, "total", out, options)
               + plots.si_curves(rows, "total", out, options)
               + plots.training_curves(inputs["run"], out, options)
               + plots.latent_projection({"sm": np.random.default_rng(0).normal(size=(300, 4)),
                                          "zprime": np.random.default_rng(1).normal(2, 1, size=(100, 4))},
                                         "sm", out, options))
    names = {p.name for p in written}
    for stem in ("scores_total", "roc_total", "scan_total", "si_total", "training", "latent_pca"):
        assert {f"{stem}.png", f"{stem}.pdf"} <= names
        _check_png(out / f"{stem}.png")
        assert (out / f"{stem}.pdf").read_bytes()[:4] == b"%PDF"
    assert not list(out.glob(".*")), "temporary files left behind"


@pytest.mark.parametrize("style", ["ATLAS", "LHCb", "ALICE"])
def test_other_experiment_styles(inputs, tmp_path, style):
    rows = plots.read_scan(inputs["scan"] / "scan.csv")
    paths = plots.si_curves(rows, "total", tmp_path, plots.PlotOptions(style=style, formats=["png"], lumi=140.0))
    assert [p.name for p in paths] == ["si_total.png"]
    _check_png(paths[0])


def test_pca_recovers_the_leading_direction():
    rng = np.random.default_rng(0)
    points = np.outer(rng.normal(size=500), [3.0, 4.0, 0.0]) / 5 + rng.normal(0, 0.01, size=(500, 3))
    proj, var = plots.pca_2d(points)
    assert proj.shape == (500, 2)
    assert var[0] > 0.99 and np.isclose(var.sum(), var[0] + var[1])
    assert np.isclose(abs(np.corrcoef(proj[:, 0], points @ np.array([0.6, 0.8, 0.0]))[0, 1]), 1.0, atol=1e-4)


def test_plot_options_are_validated(tmp_path):
    with pytest.raises(ConfigError, match="valid: null .*CMS, ATLAS, LHCb, ALICE"):
        plots.PlotOptions(style="D0")
    (tmp_path / "bad.yaml").write_text("colour: red\n")
    with pytest.raises(ConfigError, match="unknown plot option"):
        plots.load_options(tmp_path / "bad.yaml")
    options = plots.load_options(ROOT / "analysis" / "default.yaml", style="ATLAS")
    assert options.style == "ATLAS" and options.formats == ["png", "pdf"] and options.label == ""
    assert plots.load_options(ROOT / "analysis" / "default.yaml").style is None


def test_report_markdown_and_html(inputs):
    out = inputs["tmp"] / "out" / "REPORT.md"
    out.parent.mkdir()
    result = report(ReportConfig(run=inputs["run"], scan=inputs["scan"], scores=inputs["scores"], out=out))
    text = out.read_text()
    assert "```yaml" in text and "latent: 4" in text
    assert "| signal | score | AUC |" in text and "not resolved" in text
    assert "## Samples and their roles" in text and "| calibration | sm_cal | all | 2,500 |" in text
    assert text.index("## Metrics") < text.index("## Run configuration")
    assert "Nothing: independent calibration" in text
    zprime = text.split("### zprime\n", 1)[1].split("\n### ", 1)[0]
    assert "| model or cut | AUC |" in zprime and "| **" in zprime  # the best score of the signal in bold
    assert "No latent projection" in text and "model.pt" in text
    links = [line.split("](", 1)[1].rstrip(")") for line in text.splitlines() if line.startswith("![")]
    assert len(links) == 5
    for link in links:
        assert link.startswith("REPORT_files/")
        _check_png(out.parent / link)
    assert {p.name for p in result.files} >= {"roc_total.pdf", "training.png"}
    page = out.with_suffix(".html").read_text()
    assert page.count("data:image/png;base64,") == 5
    assert "http://" not in page and "https://" not in page and "<link" not in page
    parser = _Strict()
    parser.feed(page)
    parser.close()
    assert not parser.stack and {"html", "table", "pre", "img", "style"} <= parser.tags
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")], "temporary files left behind"


def test_metrics_table_keeps_not_resolved(inputs):
    header, rows = metrics_table(inputs["scan"] / "metrics.csv")
    assert header[:3] == ["signal", "score", "AUC"]
    assert len(rows) == 4 and all(len(r) == len(header) for r in rows)
    assert any("not resolved" in r for r in rows)  # 1e-3 and 1e-4 with 2,500 calibration events
    assert all("[" in r[3] for r in rows)  # eps_S at 1e-2 with its interval
    assert all(" ± " in r[2] for r in rows)  # the AUC with its bootstrap error


@pytest.mark.parametrize("missing", ["run", "scan", "scores"])
def test_missing_inputs_are_one_line_errors(inputs, missing, capsys):
    args = {"run": inputs["run"], "scan": inputs["scan"], "scores": inputs["scores"]}
    args[missing] = inputs["tmp"] / "nowhere"
    with pytest.raises(InputError, match=f"{missing}.* not found"):
        report(ReportConfig(**args, out=inputs["tmp"] / "R.md"))
    argv = ["report", "--out", str(inputs["tmp"] / "R.md")] + [x for k, v in args.items() for x in (f"--{k}", str(v))]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not found" in err
    assert not (inputs["tmp"] / "R.md").exists()


def test_cli_report(inputs, capsys):
    out = inputs["tmp"] / "R.md"
    assert main(["report", "--run", str(inputs["run"]), "--scan", str(inputs["scan"]), "--scores",
                 str(inputs["scores"]), "--out", str(out), "--style", "ATLAS"]) == 0
    assert out.is_file() and out.with_suffix(".html").is_file() and (inputs["tmp"] / "R_files" / "roc_total.png").is_file()
    assert "wrote" in capsys.readouterr().out


def test_report_without_run(inputs, capsys):
    out = inputs["tmp"] / "R.md"
    assert main(["report", "--scan", str(inputs["scan"]), "--scores", str(inputs["scores"]), "--out", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    text = out.read_text()
    assert text.startswith("# DarkFlow report: scores\n")
    assert text.count("No training curves and no latent projection: no `run` was given") == 1
    assert "No run was given." in text and "```yaml" not in text
    images = [line for line in text.splitlines() if line.startswith("![")]
    assert [i.split("](R_files/", 1)[1].rstrip(")") for i in images] == [
        "scores_total.png", "roc_total.png", "scan_total.png", "si_total.png"]
    assert sorted(p.name for p in (inputs["tmp"] / "R_files").iterdir()) == sorted(
        f"{stem}_total.{ext}" for stem in ("scores", "roc", "scan", "si") for ext in ("png", "pdf"))
    assert "| calibration | sm_cal | all | 2,500 |" in text and "### zprime" in text


def test_report_of_a_scores_file_with_cut_baselines_only(tmp_path):
    rng = np.random.default_rng(8)
    scores = tmp_path / "cuts.h5"
    with h5py.File(scores, "w") as handle:
        handle.attrs["default_score"] = "total"  # what darkflow score writes; no group has it here
        for label, n, shift in (("sm_cal", 3000, 0.0), ("sm_test", 3000, 0.0), ("zprime", 400, 1.5)):
            g = handle.create_group(label)
            g["hlf:MET"] = rng.exponential(50.0, n) * np.exp(shift)
            g["hlf:HT"] = rng.exponential(200.0, n) + 100.0 * shift
            g["weight"] = np.full(n, 0.1)
            g["event_id"] = np.arange(n)
            g["process"] = np.zeros(n, np.int64)
            g.attrs["process_names"] = json.dumps([label])
            g.attrs["source"] = f"{label}.h5"
    scan(ScanConfig(scores=scores, background="sm_test", calibration="sm_cal", out=tmp_path / "scan", eps_b="1e-2"))
    assert {"roc_hlf_HT.png", "roc_hlf_MET.pdf", "scan_hlf_MET.png", "si_hlf_HT.png"} <= {
        p.name for p in (tmp_path / "scan").iterdir()}
    result = report(ReportConfig(scan=tmp_path / "scan", scores=scores, out=tmp_path / "REPORT.md"))
    text = (tmp_path / "REPORT.md").read_text()
    assert "plotted score `hlf:HT`" in text  # the scan's first score: the file's default 'total' is in no group
    assert "REPORT_files/roc_hlf_HT.png" in text and "hlf:MET" in text and "hlf:HT" in text
    assert len(result.files) == 8
    for path in result.files:
        if path.suffix == ".png":
            _check_png(path)
    report(ReportConfig(scan=tmp_path / "scan", scores=scores, out=tmp_path / "MET.md", score="hlf:MET"))
    assert "MET_files/roc_hlf_MET.png" in (tmp_path / "MET.md").read_text()


def test_report_html_layout(inputs):
    out = inputs["tmp"] / "REPORT.md"
    report(ReportConfig(run=inputs["run"], scan=inputs["scan"], scores=inputs["scores"], out=out))
    page = out.with_suffix(".html").read_text()
    headings = re.findall(r"<h2>(.*?)</h2>", page)
    assert headings[0] == "Metrics" and headings[-1] == "Run configuration"
    assert headings.index("Samples and their roles") > headings.index("Plots")
    assert page.index("<h2>Metrics</h2>") < page.index("<table") < page.index("<img")
    # every table in its own horizontally scrolling box; the configuration folded at the very end
    assert page.count("<table>") == page.count('<div class="scroll"><table>') >= 4
    assert ".scroll{overflow-x:auto" in page
    tail = page[page.index("<h2>Run configuration</h2>"):]
    assert tail.startswith("<h2>Run configuration</h2>\n<details><summary>") and "latent: 4" in tail
    assert page.count("<details>") == 1 and "</details>\n</body>" in page
    assert "<strong>" in page and "**" not in page  # the best value of a column in bold, not in asterisks
    md = out.read_text()
    assert "<details><summary>" in md and "```yaml\ndata: sm.h5" in md and md.rstrip().endswith("</details>")


PROBE = """<script>
const wrappers = [...document.querySelectorAll("table")].map(t => t.parentElement);
const result = {
  page: document.documentElement.scrollWidth, window: window.innerWidth,
  boxes: wrappers.map(w => ({scroll: w.classList.contains("scroll"), overflow: getComputedStyle(w).overflowX,
                             right: w.getBoundingClientRect().right, client: w.clientWidth, wide: w.scrollWidth})),
  first: document.querySelector("h2").textContent, last: document.currentScript.previousElementSibling.tagName,
  folded: [...document.querySelectorAll("details")].map(d => d.open),
};
const out = document.createElement("pre");
out.id = "probe";
out.textContent = JSON.stringify(result);
document.body.appendChild(out);
</script>"""


def _chromium(*args: str) -> str:
    import shutil
    import subprocess

    done = subprocess.run([shutil.which("chromium"), "--headless", "--no-sandbox", "--disable-gpu", *args],
                          capture_output=True, text=True, timeout=180, check=True)
    return done.stdout


@pytest.mark.slow
@pytest.mark.skipif(__import__("shutil").which("chromium") is None, reason="needs Debian's chromium on PATH")
def test_report_html_renders_in_chromium(inputs):
    import html as html_lib

    import matplotlib.image as mpimg

    out = inputs["tmp"] / "REPORT.md"
    report(ReportConfig(run=inputs["run"], scan=inputs["scan"], scores=inputs["scores"], out=out))
    page = out.with_suffix(".html")
    shot = inputs["tmp"] / "shot.png"
    _chromium("--hide-scrollbars", "--window-size=1200,2400", f"--screenshot={shot}", page.as_uri())
    pixels = mpimg.imread(shot)
    assert pixels.shape[:2] == (2400, 1200)
    grey = pixels[..., :3].mean(axis=2)
    assert float(grey.var()) > 1e-3 and (grey < 0.5).mean() > 0.01, "blank screenshot"
    # the page is 64em = 1024 px wide, centred: its right margin (88 px) stays empty, no table reaches into it
    assert (grey[:, 1120:] > 0.98).all(), "something reaches into the right margin of a 1200 px window"

    # a narrow window: the metrics table must scroll inside its box, the page itself never
    probe = inputs["tmp"] / "probe.html"
    probe.write_text(page.read_text().replace("</body>", PROBE + "</body>"))
    dom = _chromium("--window-size=640,900", "--virtual-time-budget=5000", "--dump-dom", probe.as_uri())
    found = json.loads(html_lib.unescape(dom.split('<pre id="probe">', 1)[1].split("</pre>", 1)[0]))
    assert found["page"] <= found["window"] == 640
    assert found["boxes"] and all(b["scroll"] and b["overflow"] == "auto" and b["right"] <= 640
                                  for b in found["boxes"])
    assert any(b["wide"] > b["client"] for b in found["boxes"]), "no table is wider than a 640 px window?"
    assert found["first"] == "Metrics" and found["folded"] == [False] and found["last"] == "DETAILS"


def test_axis_labels_name_a_cut_baseline_by_its_feature():
    assert plots._score_label("total", "") == "Anomaly score 'total' (a.u.)"
    assert plots._score_label("hlf:MET", "") == "MET (one-variable cut)"
    assert plots._score_label("hlf:HT", "log scale", "Threshold on score") == "Threshold on HT (one-variable cut, log scale)"
