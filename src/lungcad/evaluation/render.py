"""Write a report: report.json, figures/*.png, report.md and one self-contained report.html.

Markdown and HTML are two renderings of the same list of blocks, built from the report dict
alone, so they cannot disagree with report.json.
"""

from __future__ import annotations

import base64
import html
import json
from dataclasses import dataclass, field
from pathlib import Path

from lungcad.atomic import atomic_write
from lungcad.errors import LungcadError
from lungcad.evaluation.metrics import METRIC_LABELS, PER_CLASS_METRICS

REPORT_FILES = ("report.json", "report.md", "report.html")


@dataclass
class Block:
    kind: str  # heading, paragraph, warning, table, figure
    text: str = ""
    level: int = 2
    columns: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    png: bytes = b""
    file: str = ""  # figure path relative to the report folder (Markdown links to it)


def write_report(report: dict, out_dir: str | Path) -> None:
    """Write report.json, figures/<id>.png, report.md and report.html into ``out_dir``."""
    from lungcad.evaluation.figures import render_figures

    out_dir = Path(out_dir)
    try:
        (out_dir / "figures").mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LungcadError(f"cannot create the report folder {out_dir}: {exc.strerror}") from None
    figures = render_figures(report)
    for figure_id, png in figures.items():
        atomic_write(out_dir / "figures" / f"{figure_id}.png", png)
    for s, section in enumerate(report.get("sections", [])):
        for i, image in enumerate(section["images"]):
            atomic_write(out_dir / "figures" / f"section{s}_{i}.png",
                         base64.b64decode(image["png_base64"]))
    blocks = report_blocks(report, figures)
    atomic_write(out_dir / "report.json",
                 (json.dumps(report, indent=2, allow_nan=False) + "\n").encode())
    atomic_write(out_dir / "report.md", to_markdown(blocks).encode())
    atomic_write(out_dir / "report.html", to_html(blocks).encode())


# ---------------------------------------------------------------------------------------------

def fmt(value, digits: int = 3) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _interval(record: dict) -> str:
    if record.get("ci_low") is None or record.get("ci_high") is None:
        return "n/a"
    return f"{record['ci_low']:.3f} to {record['ci_high']:.3f}"


def _ci_method(record: dict) -> str:
    method = record.get("ci_method", "")
    if record.get("ci_undefined_resamples"):
        method += f"; undefined in {record['ci_undefined_resamples']} resamples"
    return method


def _metric_rows(metrics: dict, names) -> list[list[str]]:
    return [[METRIC_LABELS.get(n, n), fmt(metrics[n]["value"]), _interval(metrics[n]),
             _ci_method(metrics[n])] for n in names if n in metrics]


def report_blocks(report: dict, figures: dict[str, bytes]) -> list[Block]:
    """The document, as blocks both renderers share."""
    task = report["task"]
    level = int(round(100 * report["bootstrap"]["confidence_level"]))
    figure_info = {f["id"]: f for f in report["figures"]}

    def figure(figure_id: str) -> list[Block]:
        if figure_id not in figure_info:
            return []
        info = figure_info[figure_id]
        return [Block("figure", text=info["title"], rows=[[info["caption"]]],
                      png=figures[figure_id], file=f"figures/{figure_id}.png")]

    b: list[Block] = [Block("heading", "lungcad evaluation report", level=1),
                      Block("paragraph", report["disclaimer"])]
    if report["warnings"]:
        b.append(Block("heading", "Warnings"))
        b += [Block("warning", w if w.startswith("WARNING") else f"WARNING: {w}")
              for w in report["warnings"]]

    b.append(Block("heading", "Data"))
    test = report["inputs"]["test"]
    validation = report["inputs"]["validation"]
    counts = ", ".join(f"{c}: {n}" for c, n in task["class_counts"].items())
    b.append(Block("paragraph", f"Test predictions: {test['source']} ({test['n']} cases; {counts}). "
                                f"Model(s): {', '.join(test['models']) or 'not named'}."
                                + (f" Folds: {', '.join(test['folds'])}." if test["folds"] else "")))
    if validation:
        b.append(Block("paragraph", f"Validation predictions: {validation['source']} "
                                    f"({validation['n']} cases)."))
    b.append(Block("paragraph", "Task: " + (f"binary, positive class {task['positive_class']!r}"
                                            if task["binary"] else
                                            f"{len(task['classes'])} classes "
                                            f"({', '.join(task['classes'])})") + "."))

    b.append(Block("heading", "Decision threshold"))
    th = report["threshold"]
    b.append(Block("table", columns=["value", "rule", "chosen on", "description"],
                   rows=[[fmt(th["value"], 4), th["rule"], th["chosen_on"], th["description"]]]))
    if "validation_operating_point" in th:
        op = th["validation_operating_point"]
        b.append(Block("paragraph", f"On the validation predictions ({op['n']} cases) this "
                                    f"threshold gives sensitivity {fmt(op['sensitivity'])} and "
                                    f"specificity {fmt(op['specificity'])}."))
    if th["rule"] == "model" and task["binary"]:
        implied = th.get("implied_range")
        b.append(Block("paragraph", "No threshold was chosen here: the report scores the model's "
                                    "own decisions (predicted_label). " +
                       (f"They match a threshold t on the score with {fmt(implied['above'], 4)} "
                        f"< t <= {fmt(implied['at_most'], 4)}." if implied else
                        "They are not consistent with any single threshold on the score.")))
    if th["chosen_on"] == "test":
        b.append(Block("warning", th["warning"]))

    b.append(Block("heading", "Metrics"))
    boot = report["bootstrap"]
    b.append(Block("paragraph",
                   f"{level}% confidence intervals from {boot['n_resamples']} bootstrap resamples "
                   f"(seed {boot['seed']}): {boot['resampling']}. {boot['method']}."
                   if boot["n_resamples"] else "No bootstrap intervals were computed."))
    header = ["metric", "value", f"{level}% CI", "CI method"]
    b.append(Block("table", columns=header, rows=_metric_rows(report["metrics"], report["metrics"])))
    if report.get("per_class"):
        b.append(Block("heading", "Per-class metrics (one-vs-rest)", level=3))
        for name, metrics in report["per_class"].items():
            b.append(Block("heading", name, level=4))
            b.append(Block("table", columns=header, rows=_metric_rows(metrics, PER_CLASS_METRICS)))
    b += figure("roc") + figure("pr")

    b.append(Block("heading", "Confusion matrix"))
    cm = report["confusion_matrix"]
    b.append(Block("table", columns=["true \\ predicted", *cm["labels"]],
                   rows=[[label, *map(str, row)] for label, row in zip(cm["labels"], cm["counts"])]))
    b += figure("confusion_matrix")

    b.append(Block("heading", "Calibration"))
    cal = report["calibration"]
    brier = report["metrics"]["brier"]
    b.append(Block("paragraph", f"Brier score {fmt(brier['value'])} ({level}% CI {_interval(brier)}). "
                                f"Expected calibration error (ECE) {fmt(cal['ece'])}, "
                                f"{cal['kind']}; binning: {cal['binning']}."))
    b.append(Block("table", columns=["bin", "n", "mean predicted", "observed"],
                   rows=[[f"[{x['lower']:.1f}, {x['upper']:.1f}" + ("]" if x["upper"] >= 1 else ")"),
                          str(x["n"]),
                          fmt(x["mean_confidence"]), fmt(x["observed_frequency"])]
                         for x in cal["bins"]]))
    b += figure("reliability") + figure("score_histograms")

    if report["subgroups"]:
        b.append(Block("heading", "Subgroups"))
        b.append(Block("paragraph", "Same predictions and threshold as above, split by the "
                                    "metadata in the predictions file. Small groups give very "
                                    "uncertain figures."))
        for table in report["subgroups"]:
            b.append(Block("heading", table["title"], level=3))
            if table["n_without_value"]:
                b.append(Block("paragraph", f"{table['n_without_value']} case(s) without a value "
                                            "are left out of this table."))
            b.append(Block("table", columns=table["columns"],
                           rows=[[fmt(row[c]) for c in table["columns"]] for row in table["rows"]]))

    for s, section in enumerate(report.get("sections", [])):
        b.append(Block("heading", section["title"]))
        b += [Block("paragraph", p) for p in section["paragraphs"]]
        for table in section["tables"]:
            if table.get("title"):
                b.append(Block("heading", table["title"], level=3))
            b.append(Block("table", columns=list(table["columns"]),
                           rows=[[fmt(row[c] if isinstance(row, dict) else row[i])
                                  for i, c in enumerate(table["columns"])] for row in table["rows"]]))
        for i, image in enumerate(section["images"]):
            b.append(Block("figure", text=image.get("title", ""),
                           rows=[[image.get("caption", "")]],
                           png=base64.b64decode(image["png_base64"]),
                           file=f"figures/section{s}_{i}.png"))

    b.append(Block("paragraph", f"Generated by lungcad {report['software']['lungcad']} at "
                                f"{report['software']['created_utc']}. {report['disclaimer']}"))
    return b


# ---------------------------------------------------------------------------------------------

def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def to_markdown(blocks: list[Block]) -> str:
    out: list[str] = []
    for block in blocks:
        if block.kind == "heading":
            out.append("#" * block.level + " " + block.text)
        elif block.kind == "paragraph":
            out.append(block.text)
        elif block.kind == "warning":
            out.append(f"> **{block.text}**")
        elif block.kind == "table":
            out.append("| " + " | ".join(_md_cell(c) for c in block.columns) + " |")
            out.append("|" + "---|" * len(block.columns))
            out += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in block.rows]
        elif block.kind == "figure":
            out.append(f"![{block.text}]({block.file})")
            out.append(f"*{block.text}.* {block.rows[0][0]}")
        out.append("")
    return "\n".join(out)


HTML_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; padding: 0 1rem;
       color: #1b1b1b; line-height: 1.45; }
table { border-collapse: collapse; margin: 0.6rem 0 1.2rem; font-size: 0.92rem; }
th, td { border: 1px solid #c8c8c8; padding: 0.25rem 0.6rem; text-align: left; }
th { background: #f0f3f7; }
.warning { background: #fff3cd; border: 2px solid #d39e00; padding: 0.6rem 0.9rem; font-weight: 600; }
.disclaimer { background: #eef4fb; border-left: 4px solid #3a6ea5; padding: 0.5rem 0.9rem; }
figure { margin: 1rem 0 1.5rem; } figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { font-size: 0.9rem; color: #444; }
"""


def to_html(blocks: list[Block]) -> str:
    """One self-contained page: figures embedded as base64 PNG, style inline, nothing external."""
    e = html.escape
    title = next((b.text for b in blocks if b.kind == "heading"), "lungcad report")
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           f"<title>{e(title)}</title><style>{HTML_STYLE}</style></head><body>"]
    first_paragraph = True
    for block in blocks:
        if block.kind == "heading":
            out.append(f"<h{block.level}>{e(block.text)}</h{block.level}>")
        elif block.kind == "paragraph":
            css = ' class="disclaimer"' if first_paragraph else ""
            first_paragraph = False
            out.append(f"<p{css}>{e(block.text)}</p>")
        elif block.kind == "warning":
            out.append(f'<p class="warning">{e(block.text)}</p>')
        elif block.kind == "table":
            out.append("<table><thead><tr>" + "".join(f"<th>{e(c)}</th>" for c in block.columns)
                       + "</tr></thead><tbody>")
            out += ["<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>" for row in block.rows]
            out.append("</tbody></table>")
        elif block.kind == "figure":
            data = base64.b64encode(block.png).decode("ascii")
            out.append(f'<figure><img alt="{e(block.text)}" src="data:image/png;base64,{data}">'
                       f"<figcaption><strong>{e(block.text)}.</strong> {e(block.rows[0][0])}"
                       "</figcaption></figure>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"
