// lungcad web page: a nodule detector's marks (the answer's `findings`, in the uploaded image's
// own pixel coordinates) as SVG circles with their scores over the shown image. The SVG's
// viewBox is the image's own frame (image.width x image.height), so the browser scales the marks
// with the picture, whatever size it is shown at. A toggle shows or hides them, a slider hides
// marks scoring below it, and a line counts the marks shown. Used by app.js (loaded first).
"use strict";

const SVG_NS = "http://www.w3.org/2000/svg";

function svgNode(tag, attrs = {}, text = null) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
  if (text !== null) node.textContent = text;
  return node;
}

// Score labels: each at the first free corner of its circle (strongest mark first), so that the
// labels of marks close together do not print over each other ("0.32.33"); a label with no free
// corner is left out (the mark's tooltip still gives its score).
const LABEL_CORNERS = [[1, -1], [1, 1], [-1, -1], [-1, 1]];

function labelBox(cx, cy, r, size, [dx, dy]) {
  const width = 2.9 * size;  // "0.00" in a bold sans-serif font, its outline and a gap
  const x = dx > 0 ? cx + 0.75 * r : cx - 0.75 * r - width;
  const y = dy < 0 ? cy - 0.75 * r : cy + 0.75 * r + size;
  return { x, y, left: x, right: x + width, top: y - 1.15 * size, bottom: y + 0.15 * size };
}

function placeLabel(placed, cx, cy, r, size) {
  for (const corner of LABEL_CORNERS) {
    const box = labelBox(cx, cy, r, size, corner);
    const free = placed.every((o) => box.right <= o.left || box.left >= o.right ||
                                     box.bottom <= o.top || box.top >= o.bottom);
    if (free) {
      placed.push(box);
      return box;
    }
  }
  return null;
}

function markNode(finding, side, placed) {
  // (x, y) is the centre of a pixel, 0 = the first pixel's centre: +0.5 in the SVG frame.
  const cx = finding.x + 0.5;
  const cy = finding.y + 0.5;
  const r = Math.max(finding.radius_px, side / 100);
  const title = `score ${finding.score.toFixed(2)}` +
    (finding.malignancy === null ? "" : `, malignancy ${finding.malignancy.toFixed(2)}`) +
    `, radius ${finding.radius_mm.toFixed(1)} mm`;
  const group = svgNode("g", { class: "mark", "data-score": finding.score });
  group.append(svgNode("title", {}, title),
    svgNode("circle", { cx, cy, r, "vector-effect": "non-scaling-stroke" }));
  const box = placeLabel(placed, cx, cy, r, side / 28);
  if (box) {
    group.append(svgNode("text", { x: box.x, y: box.y, "font-size": side / 28 },
                         finding.score.toFixed(2)));
  }
  return group;
}

function marksControls(stack, result) {
  const { width, height } = result.image;
  const side = Math.max(width, height);
  const svg = svgNode("svg", { class: "marks", viewBox: `0 0 ${width} ${height}`,
                               preserveAspectRatio: "none", role: "img",
                               "aria-label": "Nodule marks: circles with their scores" });
  const placed = [];
  const marks = result.findings.map((finding) => markNode(finding, side, placed));
  svg.append(...marks);
  stack.append(svg); // above the heatmap and the lungs
  const id = ++state.counter;
  // An image unlike the detector's training images: its marks are hidden until asked for.
  const outside = result.in_domain === false;
  const toggle = el("input", { type: "checkbox", id: `marks-${id}`, checked: !outside });
  const slider = el("input", { type: "range", id: `marks-min-${id}`, min: 0, max: 1,
                               step: 0.01, value: 0 });
  const value = el("output", { for: slider.id, class: "marks-min-value" });
  const count = el("span", { class: "marks-count", "aria-live": "polite" });
  const apply = () => {
    const minimum = Number(slider.value);
    let shown = 0;
    for (const [k, mark] of marks.entries()) {
      const visible = result.findings[k].score >= minimum;
      mark.style.display = visible ? "" : "none";
      shown += visible ? 1 : 0;
    }
    svg.style.display = toggle.checked ? "" : "none";
    slider.disabled = !toggle.checked;
    count.classList.toggle("marks-hidden-note", outside && !toggle.checked);
    value.textContent = minimum.toFixed(2);
    count.textContent = toggle.checked
      ? `${shown} of ${marks.length} mark${marks.length === 1 ? "" : "s"} shown`
      : `marks hidden (${marks.length})` + (outside ? ": the image is outside what this " +
        "model was trained on, so its marks are not to be read; Show marks shows them" : "");
  };
  toggle.addEventListener("change", apply);
  slider.addEventListener("input", apply);
  apply();
  return [el("span", { class: "control" }, toggle,
             el("label", { for: toggle.id, text: "Show marks" })),
          el("span", { class: "control" },
             el("label", { for: slider.id, text: "Minimum score" }), slider, value),
          count];
}

function marksNotes(result) {
  // What the findings panel says about the marks: what they are, and the detector's warnings.
  const notes = el("div", { class: "marks-notes" },
    el("p", { class: "small", text: result.findings.length
      ? `Nodule marks: ${result.findings.length} (yellow circles; the number is the mark's ` +
        "score, higher = more likely a nodule). A mark is where to look, not a finding."
      : "No nodule marks on this image." }));
  if (result.findings_warnings && result.findings_warnings.length) {
    notes.append(el("ul", { class: "notes", "aria-label": "Notes on the marks" },
      ...result.findings_warnings.map((warning) => el("li", { text: warning }))));
  }
  return notes;
}
