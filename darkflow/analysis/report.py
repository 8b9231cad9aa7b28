"""``darkflow report``: a Markdown report and the same as a self-contained HTML page.

In order: the metrics of ``darkflow scan`` per signal with their intervals ("not resolved" working points
kept as such), what needs attention (inverted scores, training that did not converge, a collapsed latent
space, calibration warnings), the plots of :mod:`darkflow.analysis.plots` (drawn on the test sample), the
threshold statistics with the test sample's closure, every number of ``metrics.csv``, the SM samples and
their roles (N, N_eff), and the run's configuration, folded. The run is optional: without it the report is
made from the scores file and the scan alone (any scores file of ``darkflow score``, also one with only the
``hlf:`` cut baselines) and says that the training curves and the latent projection are left out.

Images go to ``REPORT_files/`` next to ``REPORT.md``; ``REPORT.html`` embeds them as base64 data URIs and
needs no other file; its tables sit in horizontally scrolling boxes, so a wide table never widens the page.
The three outputs are checked before any work (none may be an input) and built under temporary names; a
failed or interrupted report leaves none of them new or changed.
"""

from __future__ import annotations

import base64
import csv
import html
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from darkflow.analysis import compare, plots
from darkflow.analysis.scan import NOT_RESOLVED
from darkflow.analysis.thresholds import read_scores, select_roles
from darkflow.config import Count, Name, StrictModel
from darkflow.errors import InputError
from darkflow.fileio import atomic_output, check_input

CSS = ("body{font-family:sans-serif;max-width:64em;margin:2em auto;padding:0 1em;color:#222;line-height:1.4}"
       ".scroll{overflow-x:auto;max-width:100%;margin:.5em 0 1em}"
       "table{border-collapse:collapse;font-size:90%}th,td{border:1px solid #bbb;padding:.25em .5em;text-align:right;"
       "white-space:nowrap}th{background:#eee}td:first-child,td:nth-child(2),th:first-child,th:nth-child(2)"
       "{text-align:left}"
       "tr:nth-child(even) td{background:#fafafa}p,summary{overflow-wrap:anywhere}pre{background:#f6f6f6;padding:1em;overflow:auto}"
       "details{margin:1em 0}summary{cursor:pointer;font-weight:bold}img{max-width:100%}figure{margin:1.5em 0}"
       "figcaption{font-style:italic;font-size:90%}")


class ReportConfig(StrictModel):
    """Options of ``darkflow report``: the scan folder and scores file it reports on (and the run, optional:
    training curves, latent projection, configuration), the ``.md`` to write, and how to draw
    (``plot_options``: a plot options YAML, see ``analysis/default.yaml``)."""

    run: Name | None = None
    scan: Name
    scores: Name
    out: Name
    plot_options: Name | None = None
    style: Literal["CMS", "ATLAS", "LHCb", "ALICE"] | None = None
    score: str | None = None
    latent_events: Count = plots.LATENT_EVENTS


@dataclass
class ReportResult:
    """The report written: Markdown, HTML, plot files, and the notes (what needs attention) it lists."""

    markdown: Path
    html: Path
    files: list[Path]
    notes: list[str]
    warnings: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        """The notes, then what was written."""
        return [*self.notes, f"wrote {self.markdown}, {self.html} and {len(self.files)} plot file(s)"]


@dataclass
class _Doc:
    """The report as blocks: ("h", level, text), ("p", text), ("pre", text, language), ("table", header, rows),
    ("img", path, caption), ("fold", summary, text, language): a ``pre`` block folded under ``summary``."""

    blocks: list[tuple] = field(default_factory=list)

    def markdown(self) -> str:
        out = []
        for block in self.blocks:
            kind = block[0]
            if kind == "h":
                out.append("#" * block[1] + " " + block[2])
            elif kind == "p":
                out.append(block[1])
            elif kind == "pre":
                out.append(f"```{block[2]}\n{block[1].rstrip()}\n```")
            elif kind == "table":
                header, rows = block[1], block[2]
                lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * len(header)) + "|"]
                lines += ["| " + " | ".join(r) + " |" for r in rows]
                out.append("\n".join(lines))
            elif kind == "img":
                out.append(f"![{block[2]}]({block[1].parent.name}/{block[1].name})\n\n*{block[2]}*")
            elif kind == "fold":
                out.append(f"<details><summary>{html.escape(block[1])}</summary>\n\n```{block[3]}\n"
                           f"{block[2].rstrip()}\n```\n\n</details>")
        return "\n\n".join(out) + "\n"

    def html(self, title: str) -> str:
        out = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
               f"<title>{html.escape(title)}</title>", f"<style>{CSS}</style>", "</head>", "<body>"]
        for block in self.blocks:
            kind = block[0]
            if kind == "h":
                out.append(f"<h{block[1]}>{html.escape(block[2])}</h{block[1]}>")
            elif kind == "p":
                out.append(f"<p>{_inline_html(block[1])}</p>")
            elif kind == "pre":
                out.append(f"<pre><code>{html.escape(block[1].rstrip())}</code></pre>")
            elif kind == "table":
                out.append('<div class="scroll"><table>')
                out.append("<thead><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in block[1]) + "</tr></thead>")
                out.append("<tbody>")
                for row in block[2]:
                    out.append("<tr>" + "".join(f"<td>{_inline_html(c)}</td>" for c in row) + "</tr>")
                out.append("</tbody></table></div>")
            elif kind == "img":
                data = base64.b64encode(block[1].read_bytes()).decode("ascii")
                out.append(f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(block[2])}">'
                           f"<figcaption>{html.escape(block[2])}</figcaption></figure>")
            elif kind == "fold":
                out.append(f"<details><summary>{html.escape(block[1])}</summary>"
                           f"<pre><code>{html.escape(block[2].rstrip())}</code></pre></details>")
        out += ["</body>", "</html>"]
        return "\n".join(out) + "\n"


def _inline_html(text: str) -> str:
    """Escape ``text`` and turn Markdown ``code`` spans and ``**bold**`` into <code> and <strong> elements."""
    parts = html.escape(text, quote=False).split("`")
    out = "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))
    return re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", out)


def _fmt(value: str) -> str:
    """A metrics.csv cell for reading: 4 significant digits, 'not resolved' and text kept."""
    if value in ("", NOT_RESOLVED):
        return value or "-"
    try:
        number = float(value)
    except ValueError:
        return value
    return f"{number:.4g}"


def _interval(row: dict[str, str], name: str, key: str) -> str:
    """``value [lo, hi]`` of ``name@key`` (``name_lo@key``, ``name_hi@key``), or the cell as it is."""
    value = row.get(f"{name}@{key}", "")
    lo, hi = row.get(f"{name}_lo@{key}", ""), row.get(f"{name}_hi@{key}", "")
    if value in ("", NOT_RESOLVED) or lo in ("", NOT_RESOLVED) or hi in ("", NOT_RESOLVED):
        return _fmt(value)
    return f"{_fmt(value)} [{_fmt(lo)}, {_fmt(hi)}]"


def _read_rows(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        raise InputError(f"metrics file not found: {path}; run 'darkflow scan' first")
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
    except (UnicodeDecodeError, csv.Error) as err:
        raise InputError(f"{path}: not a CSV file of 'darkflow scan' ({err})") from None
    if not rows:
        raise InputError(f"{path}: no rows")
    missing = [c for c in ("signal", "score") if c not in rows[0]]
    if missing:
        raise InputError(f"{path}: no column {', '.join(missing)}; rerun 'darkflow scan'")
    return rows


def _keys(rows: list[dict[str, str]]) -> list[str]:
    return [k.split("@", 1)[1] for k in rows[0] if k.startswith("eps_s@")]


def metrics_table(path: Path) -> tuple[list[str], list[list[str]]]:
    """A readable table of ``metrics.csv``: AUC with its error, eps_S with its interval per eps_B, SI."""
    rows = _read_rows(path)
    keys = _keys(rows)
    header = ["signal", "score", "AUC", *(f"eps_S @ eps_B={k}" for k in keys), "SI max", "total improvement"]
    out = []
    for row in rows:
        auc = _fmt(row.get("auc", ""))
        if row.get("auc_err", "") not in ("", NOT_RESOLVED):
            auc += f" ± {float(row['auc_err']):.2g}"
        if row.get("note"):
            auc += " (inverted)" if row["note"].startswith("inverted") else f" ({row['note']})"
        out.append([row["signal"], row["score"], auc, *(_interval(row, "eps_s", k) for k in keys),
                    _fmt(row.get("si_max", "")), _fmt(row.get("total_improvement", ""))])
    return header, out


def thresholds_table(path: Path) -> tuple[list[str], list[list[str]]]:
    """Per score and eps_B: threshold, achieved eps_B on the calibration sample, effective events above it,
    and eps_B of the test sample above it (closure), each with its interval."""
    rows = _read_rows(path)
    header = ["score", "eps_B", "threshold", "eps_B calibration", "N_eff above (calibration)", "eps_B test"]
    out, seen = [], set()
    for row in rows:
        if row["score"] in seen:
            continue
        seen.add(row["score"])
        for key in _keys(rows):
            out.append([row["score"], key, _fmt(row.get(f"thr@{key}", "")), _interval(row, "eps_b", key),
                        _fmt(row.get(f"n_eff_b_above@{key}", "")), _interval(row, "eps_b_test", key)])
    return header, out


def _entries(metrics: dict[str, Any]) -> list:
    """One comparison entry per score of a ``metrics.json``, in the scan's order."""
    scores = list(dict.fromkeys(r["score"] for r in metrics.get("rows", [])))
    return [compare.entries_from_metrics(s, metrics, s) for s in scores]


def _eps_keys(metrics: dict[str, Any]) -> list[str]:
    from darkflow.analysis.scan import eps_label

    return [eps_label(e) for e in metrics.get("eps_b", [])]


def training_flags(run: Path) -> list[str]:
    """One line per training problem recorded in the run (not converged, collapsed latent space)."""
    from darkflow.checkpoint import load_weights
    from darkflow.train.diagnostics import warnings_for

    if not (run / "model.pt").is_file():
        return []
    _, meta, _ = load_weights(run, "model.pt", "trained model", "")
    return [line[0].upper() + line[1:] for line in warnings_for(meta.get("diagnostics") or {})]


def _checked(path: Path, what: str, directory: bool, hint: str) -> Path:
    try:
        return check_input(path, what, directory=directory)
    except InputError as err:
        raise InputError(f"{err}; {hint}") from None


def _check_inputs(options: ReportConfig) -> None:
    if Path(options.out).suffix.lower() != ".md":
        raise InputError(f"`out` {options.out}: the report must be a .md file (the .html is written next to it)")
    if options.run is not None:
        run = _checked(options.run, "run directory", True, "give the run directory darkflow train wrote")
        _checked(run / "config.yaml", "run configuration", False, "is it a run directory of 'darkflow train'?")
    scan = _checked(options.scan, "scan folder", True, "give the folder darkflow scan wrote")
    for name in ("metrics.csv", "metrics.json", "scan.csv"):
        _checked(scan / name, f"scan file {name}", False, "run 'darkflow scan' into the scan folder first")
    _checked(options.scores, "scores file", False, "write it with 'darkflow score'")
    if options.plot_options is not None:
        _checked(options.plot_options, "plot options file", False, "give a YAML file like analysis/default.yaml")


def _latent(options: ReportConfig, scores, background: str, files: Path, plot_options) -> tuple[list[Path], str]:
    """The latent projection plot and a note (why it is missing, or what it shows)."""
    assert options.run is not None
    model_file = Path(options.run) / "model.pt"
    if not model_file.is_file():
        return [], f"No latent projection: the run has no `model.pt` ({model_file})."
    from darkflow.train.run import load_model

    model, _ = load_model(options.run)
    if not hasattr(model, "posterior_mean"):
        return [], f"No latent projection: the model ({type(model).__name__}) has no latent space."
    embeddings, notes = plots.latent_embeddings(model, scores, options.latent_events)
    paths = plots.latent_projection(embeddings, background, files, plot_options)
    note = (f"Posterior means of up to {options.latent_events} events per label, projected on their two "
            "leading principal components.")
    if notes:
        note += " Skipped: " + "; ".join(notes) + "."
    return paths, note


def _score(scores, metrics: dict[str, Any], name: str | None) -> str:
    """The score to plot: ``name``, else the scores file's default score when the scan has it, else the scan's
    first score (a scores file with only ``hlf:`` cut baselines has no model score)."""
    if name is not None:
        return scores.score_name(name)
    scanned = list(dict.fromkeys(r["score"] for r in metrics.get("rows", [])))
    if scores.default_score in scanned or not scanned:
        return scores.score_name(None)
    return scores.score_name(scanned[0])


def report(options: ReportConfig) -> ReportResult:
    """Write ``options.out`` (Markdown), the same as ``.html`` and the plots in ``<stem>_files/``."""
    from darkflow.config import read_yaml

    _check_inputs(options)
    run = Path(options.run) if options.run is not None else None
    scan_dir, out = Path(options.scan), Path(options.out)
    scores = read_scores(options.scores)
    try:
        metrics = json.loads((scan_dir / "metrics.json").read_text())
    except (ValueError, UnicodeDecodeError):
        raise InputError(f"{scan_dir / 'metrics.json'}: not JSON; rerun 'darkflow scan'") from None
    if not isinstance(metrics, dict) or "background" not in metrics:
        raise InputError(f"{scan_dir / 'metrics.json'}: no 'background'; rerun 'darkflow scan' with this version")
    roles = select_roles(scores, metrics["background"], metrics.get("calibration_option"),
                         list(metrics.get("roles", {}).get("signals", {})) or None)
    score = _score(scores, metrics, options.score)
    simulation = all(s.simulation for s in [roles.test, *roles.signals.values()])
    plot_options = plots.load_options(options.plot_options, style=options.style, simulation=simulation or None)
    config_text = None
    if run is not None:
        read_yaml(run / "config.yaml", "run configuration")
        config_text = (run / "config.yaml").read_text()
    name = run.name if run is not None else Path(options.scores).stem
    title = f"DarkFlow report: {name}"

    files = out.with_name(f"{out.stem}_files")
    inputs = [*([run] if run is not None else []), scan_dir, options.scores,
              *([options.plot_options] if options.plot_options else [])]
    with (atomic_output(out, inputs=inputs) as md_tmp,
          atomic_output(out.with_suffix(".html"), inputs=inputs) as html_tmp,
          atomic_output(files, directory=True, inputs=inputs) as staging):
        rows = plots.read_scan(scan_dir / "scan.csv")
        figures: list[tuple[str, list[Path]]] = [
            (f"Weighted score distributions of the test sample ({roles.test.label}, stacked by process) and the "
             "signals (each normalised to unit area).",
             plots.score_distributions(roles.test, roles.signals, score, staging, plot_options)),
            (f"ROC: background rejection on the test sample ({roles.test.label}, N_eff = {roles.test.n_eff:,.0f}) "
             "versus signal efficiency; curves stop where fewer than 10 effective test events remain.",
             plots.roc(roles.test, roles.signals, score, staging, plot_options)),
            ("Threshold scan: signal and calibration background efficiencies above the threshold (band: 68% "
             "interval on eps_B; shaded: fewer than 10 effective calibration events above the threshold, eps_B "
             "not resolved).",
             plots.scan_curves(rows, score, staging, plot_options)),
            ("Significance improvement versus background efficiency, resolved points only (at least 10 effective "
             "calibration events above the threshold); the star is the table's SI max.",
             plots.si_curves(rows, score, staging, plot_options)),
        ]
        if run is not None:
            figures.append(("Training curves from the run's metrics.csv (validation: event-weighted mean).",
                            plots.training_curves(run, staging, plot_options)))
            latent_paths, latent_note = _latent(options, scores, roles.test.label, staging, plot_options)
            figures.append(("2D PCA projection of the latent space, coloured by label.", latent_paths))
        else:
            latent_note = ("No training curves and no latent projection: no `run` was given; this report is made "
                           "from the scores file and the scan alone.")

        flags = list(roles.warnings) + (training_flags(run) if run is not None else [])
        flags += [f"{r['signal']} / {r['score']}: {r['note']}" for r in metrics.get("rows", []) if r.get("note")]
        source = f"Run `{run}`, scores" if run is not None else "Scores"
        doc = _Doc()
        doc.blocks += [
            ("h", 1, title),
            ("p", f"{source} `{options.scores}`, scan `{scan_dir}`; test sample `{roles.test.label}`, "
                  f"calibration sample `{roles.calibration.label}`, plotted score `{score}`."),
            ("h", 2, "Metrics"),
            ("p", "AUC ± its Poisson-bootstrap standard deviation, against the test sample; eps_S at each background "
                  "efficiency with its central 68% interval, thresholds set on the calibration sample. "
                  f"'{NOT_RESOLVED}': eps_B * N_eff(calibration) < {metrics.get('min_effective_events', 10):g}. "
                  f"Per signal, every score of the scan (`hlf:` rows: one-variable cuts, no training); **bold**: "
                  f"the best in the column, {compare.APPROX}: consistent with it within the uncertainties."),
            *[block for signal in roles.signals for block in (
                ("h", 3, signal),
                ("table", *compare.signal_rows(_entries(metrics), signal, _eps_keys(metrics), {})))],
            ("h", 2, "Needs attention"),
            *([("p", f"- {line}") for line in flags] or [("p", "Nothing: independent calibration, converged "
                                                               "training, no inverted score.")]),
            ("h", 2, "Plots"),
        ]
        final: list[Path] = []
        for caption, paths in figures:
            png = [p for p in paths if p.suffix == ".png"]
            if png:
                doc.blocks.append(("img", files / png[0].name, caption))
                final += [files / p.name for p in paths]
        if latent_note:
            doc.blocks.append(("p", latent_note))
        doc.blocks += [
            ("h", 2, "Thresholds"),
            ("p", "Each threshold with the efficiency it achieves on the calibration sample, the effective number of "
                  "calibration events above it, and the efficiency of the independent test sample above it "
                  "(closure: it should agree with the calibration value)."),
            ("table", *thresholds_table(scan_dir / "metrics.csv")),
            ("h", 2, "Every number of the scan"),
            ("p", "The rows of `metrics.csv`, one per signal and score:"),
            ("table", *metrics_table(scan_dir / "metrics.csv")),
            ("h", 2, "Samples and their roles"),
            ("table", *compare.roles_rows(metrics.get("roles", {}))),
            ("h", 2, "Run configuration"),
        ]
        if config_text is not None:
            doc.blocks.append(("fold", f"config.yaml of {run}", config_text, "yaml"))
        else:
            doc.blocks.append(("p", "No run was given."))
        # the HTML reads the images from the staging folder before it is renamed into place
        staged = _Doc([(b[0], staging / b[1].name, b[2]) if b[0] == "img" else b for b in doc.blocks])
        html_tmp.write_text(staged.html(title), newline="")
        md_tmp.write_text(doc.markdown(), newline="")
    return ReportResult(out, out.with_suffix(".html"), final, [latent_note, *flags])
