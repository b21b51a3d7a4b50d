// lungcad web page: upload images to /api/v1/predict and show verdict, probabilities, heatmap,
// and lung outlines (a segmentation model's answer, or a layer over a classifier's image).
// Everything from the server or the user (file names, messages, model cards) is put in the page
// as text nodes, never as HTML.
"use strict";

const API = "/api/v1";
const state = { models: [], byId: new Map(), queue: Promise.resolve(), counter: 0,
                lungsModel: null };

// --- small DOM helpers -----------------------------------------------------------------------

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function percent(p) {
  return `${(100 * p).toFixed(1)}%`;
}

function setStatus(text) {
  document.getElementById("status").textContent = text;
}

// --- model card: a minimal, safe Markdown rendering (headings, lists, code, tables as text) ----

function inline(text) {
  // **bold** and `code`; everything else plain text.
  const out = document.createDocumentFragment();
  const pattern = /(\*\*[^*]+\*\*|`[^`]+`)/g;
  let last = 0;
  for (const match of text.matchAll(pattern)) {
    if (match.index > last) out.append(text.slice(last, match.index));
    const token = match[0];
    out.append(token.startsWith("**") ? el("strong", { text: token.slice(2, -2) })
                                      : el("code", { text: token.slice(1, -1) }));
    last = match.index + token.length;
  }
  if (last < text.length) out.append(text.slice(last));
  return out;
}

function renderMarkdown(markdown, container) {
  container.replaceChildren();
  const lines = markdown.replace(/\r\n?/g, "\n").split("\n");
  let paragraph = [];
  let list = null;
  let block = null; // lines of a fenced code block or a table, shown preformatted
  const flush = () => {
    if (paragraph.length) container.append(el("p", {}, inline(paragraph.join(" "))));
    paragraph = [];
    list = null;
  };
  for (const line of lines) {
    if (block !== null && block.fence) {
      if (line.trim().startsWith("```")) {
        container.append(el("pre", { text: block.lines.join("\n") }));
        block = null;
      } else {
        block.lines.push(line);
      }
      continue;
    }
    if (block !== null) { // a table: rows start with "|"
      if (line.trim().startsWith("|")) {
        block.lines.push(line);
        continue;
      }
      container.append(el("pre", { class: "table", text: block.lines.join("\n") }));
      block = null;
    }
    const trimmed = line.trim();
    const heading = /^(#{1,6})\s+(.*)$/.exec(trimmed);
    const item = /^[-*+]\s+(.*)$/.exec(trimmed);
    if (trimmed.startsWith("```")) {
      flush();
      block = { fence: true, lines: [] };
    } else if (trimmed.startsWith("|")) {
      flush();
      block = { fence: false, lines: [line] };
    } else if (heading) {
      flush();
      const level = Math.min(6, heading[1].length + 2); // the card sits under the page's h2
      container.append(el(`h${level}`, {}, inline(heading[2])));
    } else if (item) {
      if (paragraph.length) flush();
      if (!list) {
        list = el("ul");
        container.append(list);
      }
      list.append(el("li", {}, inline(item[1])));
    } else if (trimmed === "") {
      flush();
    } else {
      list = null;
      paragraph.push(trimmed);
    }
  }
  if (block !== null) container.append(el("pre", { text: block.lines.join("\n") }));
  flush();
  if (!container.childNodes.length) {
    container.append(el("p", { class: "muted", text: "This model has no model card." }));
  }
}

// --- models ----------------------------------------------------------------------------------

const AUTO_MODEL = { id: "auto", auto: true, name: "Automatic", kind: "auto", heatmaps: true,
                     card: "" };

function currentModel() {
  const value = document.getElementById("model-select").value;
  if (value === "auto") return AUTO_MODEL;
  return state.byId.get(value) || state.models[0];
}

function isSegmenter(model) {
  return model.kind === "segmenter";
}

function showModel(model) {
  if (model.auto) {
    document.getElementById("model-summary").textContent =
      "Each image goes to the model(s) for its modality (chest radiograph or CT slice: " +
      "the DICOM Modality tag, else the image itself).";
    showCards(state.models.filter((m) => !isSegmenter(m)));
    document.getElementById("want-heatmap").disabled = false;
    document.getElementById("heatmap-note").textContent = "";
    // the lung outline: for the radiographs, where the server has a lung model
    const autoLungs = document.getElementById("lungs-option");
    autoLungs.hidden = !state.lungsModel;
    document.getElementById("want-lungs").checked = !autoLungs.hidden;
    document.getElementById("lungs-note").textContent = state.lungsModel
      ? `(model ${state.lungsModel}; for frontal chest radiographs)` : "";
    return;
  }
  const threshold = model.threshold === null
    ? "most probable class wins"
    : `verdict "${model.classes[model.classes.length - 1]}" at p ≥ ${model.threshold.toFixed(3)}`;
  document.getElementById("model-summary").textContent = isSegmenter(model)
    ? `${model.name} v${model.version} · ${model.task} · ${model.modality} · ` +
      "outlines the lung fields and measures each lung"
    : `${model.name} v${model.version} · ${model.task} · ${model.modality} · ` +
      `classes: ${model.classes.join(", ")} · ${threshold}` +
      (model.marks ? " · marks nodules (circles with scores)" : "");
  renderMarkdown(model.card || "", document.getElementById("model-card"));
  const wantHeatmap = document.getElementById("want-heatmap");
  wantHeatmap.disabled = !model.heatmaps;
  if (!model.heatmaps) wantHeatmap.checked = false;
  if (model.heatmaps && wantHeatmap.dataset.userSet !== "true") wantHeatmap.checked = true;
  document.getElementById("heatmap-note").textContent = model.heatmaps ? ""
    : isSegmenter(model) ? "(a segmentation model outlines the lungs; it has no heatmap)"
      : "(not available for this model: it runs on ONNX Runtime, or heatmaps are not installed)";
  // The lung outline layer: for a classifier, when the server has a lung model; on by
  // default for radiograph models.
  const lungsOption = document.getElementById("lungs-option");
  lungsOption.hidden = !state.lungsModel || isSegmenter(model);
  document.getElementById("want-lungs").checked =
    !lungsOption.hidden && model.modality === "chest radiograph";
  document.getElementById("lungs-note").textContent = state.lungsModel
    ? `(model ${state.lungsModel}; for frontal chest radiographs)` : "";
}

function showCards(models) {
  // Automatic mode: the cards of the models it may run (or ran, after an image), in order.
  const text = models.map((m) => m.card ? m.card
    : `# ${m.name}\n\nThis model has no model card.`).join("\n\n");
  renderMarkdown(text, document.getElementById("model-card"));
}

async function loadModels() {
  const response = await fetch(`${API}/models`);
  if (!response.ok) throw new Error(`cannot list the models (HTTP ${response.status})`);
  const body = await response.json();
  state.models = body.models;
  state.lungsModel = body.lungs_model || null;
  const select = document.getElementById("model-select");
  for (const model of body.models) {
    state.byId.set(model.id, model);
    select.append(el("option", { value: model.id, text: `${model.name} (v${model.version})` }));
  }
  const modalities = new Set(body.models.filter((m) => !isSegmenter(m)).map((m) => m.modality));
  if (modalities.size > 1) {  // the default: each image to the model(s) of its modality
    select.prepend(el("option", { value: "auto", text: "Automatic: by each image's modality" }));
    select.value = "auto";
  } else {
    select.value = state.byId.has(body.default) ? body.default : body.models[0].id;
  }
  document.getElementById("model-picker").hidden = body.models.length < 2;
  select.addEventListener("change", () => showModel(currentModel()));
  showModel(currentModel());
}

// --- one result ------------------------------------------------------------------------------

function probabilityRows(result, model) {
  const list = el("ul", { class: "probs", "aria-label": "Probability per class" });
  const positive = result.threshold !== null ? model.classes[model.classes.length - 1] : null;
  for (const [name, p] of Object.entries(result.probabilities)) {
    const fill = el("span", { class: "fill" });
    fill.style.width = percent(Math.max(0, Math.min(1, p)));
    const bar = el("span", { class: "bar", "aria-hidden": "true" }, fill);
    if (name === positive) {
      const mark = el("span", { class: "threshold-mark", title: `threshold ${result.threshold}` });
      mark.style.left = percent(result.threshold);
      bar.append(mark);
    }
    const chosen = name === result.label;
    list.append(el("li", { class: chosen ? "chosen" : "" },
      el("span", { class: "class-name", text: name }), bar,
      el("span", { class: "value", text: percent(p) })));
  }
  return list;
}

function verdictBlock(result, model) {
  const negative = model.classes[0];
  const flagged = result.label !== negative;
  const rule = result.threshold !== null
    ? `Verdict "${model.classes[model.classes.length - 1]}" when its probability reaches ` +
      `${result.threshold.toFixed(3)} (the line on its bar).`
    : "The most probable class is the verdict.";
  const outside = result.in_domain === false;
  return el("div", { class: `verdict ${outside ? "outside" : flagged ? "flagged" : "clear"}` },
    outside ? el("span", { class: "ood-badge", role: "alert",
      text: "Outside what this model was trained on: do not read this verdict" }) : null,
    el("span", { class: "verdict-caption", text: outside ? "Model output (out of domain)"
                                                          : "Model output" }),
    el("strong", { class: "verdict-label", text: result.label }),
    el("span", { class: "verdict-rule", text: rule }),
    result.in_training_data ? el("span", { class: "verdict-rule training-note",
      text: "This image was in the model's training data: this output is not a test of " +
            "the model." }) : null,
    outside ? el("span", { class: "verdict-rule", text: `Domain score ` +
      `${result.domain_score.toPrecision(3)} above this model's threshold ` +
      `${result.domain_threshold.toPrecision(3)}: the image is unlike its training images.` }) : null);
}

function heatmapControls(stack, result) {
  const layer = el("img", { class: "heatmap", alt: "Heatmap: where the model looked (red = most)",
                           src: `data:image/png;base64,${result.heatmap_layer_png}` });
  stack.append(layer);
  const id = ++state.counter;
  const toggle = el("input", { type: "checkbox", id: `show-${id}`, checked: true });
  const opacity = el("input", { type: "range", id: `opacity-${id}`, min: 0, max: 100, value: 70 });
  const apply = () => {
    layer.hidden = !toggle.checked;
    opacity.disabled = !toggle.checked;
    layer.style.opacity = String(opacity.value / 100);
  };
  toggle.addEventListener("change", apply);
  opacity.addEventListener("input", apply);
  apply();
  return [el("span", { class: "control" }, toggle,
             el("label", { for: toggle.id, text: "Show heatmap" })),
          el("span", { class: "control" }, el("label", { for: opacity.id, text: "Opacity" }),
             opacity)];
}

function lungsControl(stack, layerPng, plausible) {
  const layer = el("img", { class: "lungs", src: `data:image/png;base64,${layerPng}`,
    alt: "Lung outline: the patient's right lung in cyan, the left in orange" });
  stack.append(layer); // above the heatmap
  const toggle = el("input", { type: "checkbox", id: `lungs-${++state.counter}`,
                               checked: plausible });
  const apply = () => { layer.hidden = !toggle.checked; };
  toggle.addEventListener("change", apply);
  apply();
  return el("span", { class: "control" }, toggle,
            el("label", { for: toggle.id, text: "Show lungs" }));
}

function viewer(result, fileName) {
  const base = el("img", { class: "base", alt: `${fileName} as read by lungcad`,
                          src: `data:image/png;base64,${result.image_png}` });
  const stack = el("div", { class: "stack" }, base);
  const figure = el("figure", { class: "viewer" }, stack);
  const controls = [];
  const segmentation = result.kind === "segmentation";
  if (result.heatmap_layer_png) controls.push(...heatmapControls(stack, result));
  if (result.lungs_png) {
    const plausible = segmentation ? result.plausible : result.lungs_plausible;
    controls.push(lungsControl(stack, result.lungs_png, plausible !== false));
  }
  if (result.findings) controls.push(...marksControls(stack, result)); // marks.js: a detector
  if (controls.length) figure.append(el("figcaption", { class: "viewer-controls" }, ...controls));
  const missing = [];
  if (!segmentation && !result.heatmap_layer_png) {
    missing.push(result.heatmap_error || "No heatmap requested.");
  }
  if (result.lungs_error) missing.push(result.lungs_error);
  for (const text of missing) figure.append(el("figcaption", { class: "muted", text }));
  return figure;
}

function sideLines(measures) {
  const places = { right: "image left", left: "image right" };
  return ["right", "left"].map((side) => {
    const size = measures[`${side}_area_mm2`] !== undefined
      ? `${(measures[`${side}_area_mm2`] / 100).toFixed(1)} cm², ` +
        `${(measures[`${side}_height_mm`] / 10).toFixed(1)} cm high`
      : `${measures[`${side}_area_px`].toLocaleString("en")} px, ` +
        `${measures[`${side}_height_px`].toLocaleString("en")} px high`;
    return { side, text: `${side} lung (${places[side]}): ${size}` };
  });
}

function measuresList(measures, label) {
  return el("ul", { class: "measures", "aria-label": label },
    ...sideLines(measures).map(({ side, text }) =>
      el("li", {}, el("span", { class: `swatch ${side}`, "aria-hidden": "true" }), text)));
}

function warningsList(warnings, label) {
  return el("ul", { class: "notes", "aria-label": label },
    ...warnings.map((warning) => el("li", { text: warning })));
}

function segmentationFindings(result) {
  const block = el("div", { class: `verdict ${result.plausible ? "clear" : "flagged"}` },
    el("span", { class: "verdict-caption", text: "Lung fields" }),
    el("strong", { class: "verdict-label",
                   text: result.plausible ? "lungs outlined" : "no plausible pair of lungs" }),
    el("span", { class: "verdict-rule",
                 text: "Sides are the patient's: on a frontal (PA) view the right lung is on " +
                       "the image's left." }));
  const findings = el("div", { class: "findings" }, block,
                      measuresList(result.measures, "Size of each lung"));
  if (result.warnings.length) findings.append(warningsList(result.warnings, "Warnings"));
  return findings;
}

function renderResult(card, result, model, fileName) {
  const image = result.image;
  card.querySelector(".result-meta").textContent =
    `${image.format.toUpperCase()} · ${image.width}×${image.height} px · ${model.name} v${result.model_version}`;
  const segmentation = result.kind === "segmentation";
  const findings = segmentation ? segmentationFindings(result)
    : el("div", { class: "findings" }, verdictBlock(result, model), probabilityRows(result, model));
  if (!segmentation && result.lungs_measures) {
    findings.append(el("p", { class: "small", text: `Lung outline (${result.lungs_model}):` }),
                    measuresList(result.lungs_measures, "Size of each lung"));
    if (result.lungs_warnings.length) {
      findings.append(warningsList(result.lungs_warnings, "Lung outline warnings"));
    }
  }
  if (result.findings) findings.append(marksNotes(result));
  if (image.notes.length) {
    findings.append(el("ul", { class: "notes", "aria-label": "Notes on reading the image" },
      ...image.notes.map((note) => el("li", { text: note }))));
  }
  findings.append(el("p", { class: "muted small",
    text: segmentation
      ? "Research output: not a diagnosis. The outline is a model's estimate of the lung fields."
      : "Research output: not a diagnosis. The heatmap shows where the model's evidence came " +
        "from, not where a lesion is." }));
  card.querySelector(".result-body").replaceChildren(viewer(result, fileName), findings);
  card.classList.add("done");
}

function renderError(card, message) {
  card.querySelector(".result-meta").textContent = "not analysed";
  card.querySelector(".result-body").replaceChildren(
    el("p", { class: "error", role: "alert", text: message }));
  card.classList.add("failed");
}

async function analyse(file, card, model, wantHeatmap, wantLungs) {
  const form = new FormData();
  form.append("file", file, file.name);
  form.append("model", model.id);
  form.append("heatmap", wantHeatmap ? "true" : "false");
  form.append("lungs", wantLungs ? "true" : "false");
  let response;
  try {
    response = await fetch(`${API}/predict?display=true`, { method: "POST", body: form });
  } catch (error) {
    renderError(card, `Could not reach the server: ${error.message}`);
    return null;
  }
  let body = null;
  try {
    body = await response.json();
  } catch (error) {
    body = null;
  }
  if (!response.ok) {
    renderError(card, body && body.error ? body.error : `The server answered HTTP ${response.status}.`);
    return null;
  }
  renderResult(card, body, model, file.name);
  return statusText(body);
}

function statusText(result) {
  // The status line's words for one answer, with the caveats the card shows.
  if (result.kind === "segmentation") {
    return result.plausible ? "lungs outlined" : "no plausible pair of lungs";
  }
  const caveats = [];
  if (result.in_domain === false) caveats.push("OUT OF DOMAIN: do not read this verdict");
  if (result.in_training_data) caveats.push("in the model's training data");
  return result.label + (caveats.length ? ` (${caveats.join("; ")})` : "");
}

function newCard(title) {
  return el("article", { class: "result", "aria-busy": "true" },
    el("header", { class: "result-header" },
      el("h2", { class: "result-title", text: title }),
      el("span", { class: "result-meta", text: "waiting…" })),
    el("div", { class: "result-body" },
      el("p", { class: "pending" }, el("span", { class: "spinner", "aria-hidden": "true" }),
         "Analysing…")));
}

async function analyseAuto(file, card, wantHeatmap, wantLungs) {
  // Ask the server for the image's modality and its models, then one card per model.
  const form = new FormData();
  form.append("file", file, file.name);
  let body = null;
  try {
    const response = await fetch(`${API}/modality`, { method: "POST", body: form });
    body = await response.json();
    if (!response.ok) throw new Error(body && body.error ? body.error : `HTTP ${response.status}`);
  } catch (error) {
    renderError(card, `Could not tell the image's modality: ${error.message}`);
    return null;
  }
  if (!body.models.length) {
    // "neither" (a photograph, a gradient): the server says why no model reads it
    renderError(card, body.reason ||
                `This ${body.modality} image has no served model of its modality.`);
    return body.reason ? "sent to no model: neither a chest radiograph nor a CT slice" : null;
  }
  const what = body.modality === "ct" ? "CT slice" : "chest radiograph";
  const radiograph = body.modality !== "ct";
  showCards(body.models.map((id) => state.byId.get(id)));
  const texts = [];
  let last = card;
  for (const [k, id] of body.models.entries()) {
    const target = k === 0 ? card : newCard(file.name || "image");
    if (k > 0) last.after(target); // the cards in the order of the modality's model list
    last = target;
    target.querySelector(".result-title").textContent =
      `${file.name || "image"} · ${what} (${body.source}) → ${id}`;
    const text = await analyse(file, target, state.byId.get(id), wantHeatmap,
                               wantLungs && radiograph);
    texts.push(`${id}: ${text === null ? "could not be analysed" : text}`);
    target.setAttribute("aria-busy", "false");
  }
  return texts.join("; ");
}

function addFiles(files) {
  const list = Array.from(files);
  if (!list.length || !state.models.length) return;
  const model = currentModel();
  const wantHeatmap = document.getElementById("want-heatmap").checked;
  const wantLungs = !document.getElementById("lungs-option").hidden &&
    document.getElementById("want-lungs").checked;
  const results = document.getElementById("results");
  for (const file of list) {
    const card = el("article", { class: "result", "aria-busy": "true" },
      el("header", { class: "result-header" },
        el("h2", { class: "result-title", text: file.name || "image" }),
        el("span", { class: "result-meta", text: "waiting…" })),
      el("div", { class: "result-body" },
        el("p", { class: "pending" }, el("span", { class: "spinner", "aria-hidden": "true" }),
           "Analysing…")));
    results.prepend(card);
    // One upload at a time: the server predicts one image at a time per model anyway.
    state.queue = state.queue.then(async () => {
      setStatus(`Analysing ${file.name}…`);
      const text = model.auto ? await analyseAuto(file, card, wantHeatmap, wantLungs)
                              : await analyse(file, card, model, wantHeatmap, wantLungs);
      card.setAttribute("aria-busy", "false");
      setStatus(`${file.name}: ${text === null ? "could not be analysed" : text}`);
    });
  }
}

// --- wiring ----------------------------------------------------------------------------------

function setUpDropzone() {
  const zone = document.getElementById("dropzone");
  const input = document.getElementById("file-input");
  input.addEventListener("change", () => {
    addFiles(input.files);
    input.value = ""; // choosing the same file again still fires "change"
  });
  for (const type of ["dragenter", "dragover"]) {
    zone.addEventListener(type, (event) => {
      event.preventDefault();
      zone.classList.add("dragging");
    });
  }
  for (const type of ["dragleave", "drop"]) {
    zone.addEventListener(type, () => zone.classList.remove("dragging"));
  }
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    addFiles(event.dataTransfer.files);
  });
  // A file dropped beside the zone must not make the browser navigate away to it.
  window.addEventListener("dragover", (event) => event.preventDefault());
  window.addEventListener("drop", (event) => event.preventDefault());
}

document.addEventListener("DOMContentLoaded", () => {
  setUpDropzone();
  const wantHeatmap = document.getElementById("want-heatmap");
  wantHeatmap.addEventListener("change", () => { wantHeatmap.dataset.userSet = "true"; });
  loadModels().catch((error) => {
    document.getElementById("model-summary").textContent = `Error: ${error.message}`;
  });
});
