// The superres page: choose images, upload each as a job, poll its progress, compare before and after.
// Talks only to this server (its Content-Security-Policy allows nothing else); text goes in with textContent.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { config: null, picked: [], cards: new Map(), viewing: null, follow: true, zoom: "fit" };

function formatBytes(n) {
  if (n >= 1e6) return `${(n / 1e6).toFixed(n >= 1e7 ? 0 : 1)} MB`;
  return n >= 1e3 ? `${Math.round(n / 1e3)} kB` : `${n} bytes`;
}
function size(wh) { return `${wh[0]}\u00d7${wh[1]}`; }
function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined) node.textContent = text;
  return node;
}
function showMessage(text) { $("message").textContent = text || ""; $("message").hidden = !text; }

async function api(path, options = {}) {
  const response = await fetch(path, options);
  let body = null;
  try { body = response.status === 204 ? {} : await response.json(); } catch (_) { body = null; }
  if (!response.ok) throw new Error((body && body.error) || `the server answered ${response.status}`);
  return body;
}

// ---------------------------------------------------------------------------------- choosing images
function pick(files) {
  state.picked = Array.from(files);
  const list = $("picked");
  list.replaceChildren(...state.picked.map((f) => el("li", "", `${f.name} (${formatBytes(f.size)})`)));
  $("go").disabled = $("clear").disabled = state.picked.length === 0;
  $("go").textContent = state.picked.length > 1 ? `Upscale ${state.picked.length} images` : "Upscale";
  showMessage("");
}

function setUpDrop() {
  const drop = $("drop");
  $("file").addEventListener("change", (e) => {
    pick(e.target.files);
    e.target.value = ""; // so that choosing the same file again is a change too
  });
  for (const type of ["dragenter", "dragover"]) {
    drop.addEventListener(type, (e) => { e.preventDefault(); drop.classList.add("over"); });
  }
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => { e.preventDefault(); drop.classList.remove("over"); pick(e.dataTransfer.files); });
  window.addEventListener("dragover", (e) => e.preventDefault()); // a drop beside the zone must not open the file
  window.addEventListener("drop", (e) => e.preventDefault());
  $("clear").addEventListener("click", () => pick([]));
}

// ---------------------------------------------------------------------------------- jobs
function makeCard(name, model) {
  const card = { job: null, node: el("li", "job"), shown: false };
  const head = el("div", "job-head");
  head.append(el("span", "job-name", name), el("span", "job-model", model));
  card.status = el("div", "job-status");
  card.spinner = el("span", "spinner");
  card.text = el("span", "", "uploading\u2026");
  card.remove = el("button", "job-remove", "\u00d7");
  card.remove.title = "remove this result and its files";
  card.remove.setAttribute("aria-label", `remove ${name}`);
  card.status.append(card.spinner, card.text, card.remove);
  card.bar = el("div", "bar indeterminate");
  card.bar.append(el("div"));
  card.node.append(head, card.status, card.bar);
  card.node.addEventListener("click", (e) => {
    if (e.target !== card.remove && card.job && card.job.state === "done") { state.follow = false; view(card); }
  });
  card.remove.addEventListener("click", () => removeCard(card));
  $("jobs").prepend(card.node);
  $("empty").hidden = true;
  return card;
}

function fail(card, text) {
  card.node.className = "job error";
  card.spinner.remove();
  card.text.textContent = text;
  card.text.setAttribute("role", "alert");
}

function describe(job) {
  if (job.state === "queued") return job.ahead ? `queued, ${job.ahead} ahead` : "starting\u2026";
  if (job.state === "running") {
    return job.tiles_total > 1 ? `upscaling: tile ${job.tiles_done} of ${job.tiles_total}` : "upscaling\u2026";
  }
  return `done in ${job.seconds.toFixed(2)} s: ${size(job.input_size)} \u2192 ${size(job.output_size)}`;
}

function update(card, job) {
  card.job = job;
  if (job.state === "error") return fail(card, job.error);
  card.text.textContent = describe(job);
  const fraction = job.tiles_total ? job.tiles_done / job.tiles_total : 0;
  card.bar.classList.toggle("indeterminate", job.state === "running" && job.tiles_total <= 1 || job.state === "queued");
  card.bar.firstChild.style.width = `${Math.round(fraction * 100)}%`;
  if (job.state === "done") {
    card.node.className = "job done";
    card.spinner.remove();
    if (state.follow || !state.viewing) view(card);
  }
}

async function poll(card) {
  while (card.job && (card.job.state === "queued" || card.job.state === "running")) {
    await new Promise((resolve) => setTimeout(resolve, 350));
    if (!state.cards.has(card.job.id)) return; // removed meanwhile
    try { update(card, await api(`/api/jobs/${card.job.id}`)); } catch (error) { return fail(card, error.message); }
  }
}

async function submit(file, model, tile, outscale) {
  const card = makeCard(file.name, outscale ? `${model} \u2192 \u00d7${outscale}` : model);
  const limit = state.config.max_upload_bytes;
  if (file.size > limit) return fail(card, `${file.name}: larger than the upload limit of ${formatBytes(limit)}`);
  const query = new URLSearchParams({ name: file.name, model, tile: String(tile), outscale: String(outscale) });
  try {
    const job = await api(`/api/jobs?${query}`, {
      method: "POST", body: file, headers: { "X-Superres": "1", "Content-Type": "application/octet-stream" },
    });
    state.cards.set(job.id, card);
    update(card, job);
    poll(card);
  } catch (error) {
    fail(card, error.message);
  }
}

async function upscaleAll() {
  const model = $("model").value, tile = Number($("tile").value), outscale = Number($("outscale").value);
  state.follow = true;
  $("go").disabled = true;
  try {
    for (const file of state.picked) await submit(file, model, tile, outscale); // one at a time; the server queues
  } finally {
    $("go").disabled = state.picked.length === 0;
  }
}

async function removeCard(card) {
  if (card.job) {
    state.cards.delete(card.job.id);
    try {
      await api(`/api/jobs/${card.job.id}`, { method: "DELETE", headers: { "X-Superres": "1" } });
    } catch (_) { /* expired already */ }
  }
  if (state.viewing === card) { state.viewing = null; $("view").hidden = true; $("placeholder").hidden = false; }
  card.node.remove();
  $("empty").hidden = $("jobs").children.length > 0;
}

// ---------------------------------------------------------------------------------- before / after
function view(card) {
  const job = card.job;
  if (state.viewing) state.viewing.node.classList.remove("selected");
  state.viewing = card;
  card.node.classList.add("selected");
  $("view").hidden = false;
  $("placeholder").hidden = true;
  $("view-name").textContent = job.name;
  $("view-info").textContent =
    `${size(job.input_size)} \u2192 ${size(job.output_size)} pixels \u00b7 ${job.model} \u00b7 ${job.seconds.toFixed(2)} s`;
  $("tag-after").textContent = `After (${job.model})`;
  $("before-img").src = job.before_url;
  $("after-img").src = job.after_url;
  const link = $("download");
  link.href = job.download_url;
  link.download = job.download_name;
  link.textContent = `Download ${job.download_name.split(".").pop().toUpperCase()}`;
  layout();
}

function layout() {
  const card = state.viewing;
  if (!card) return;
  const [w, h] = card.job.output_size;
  const stage = $("stage"), compare = $("compare");
  let scale = 1;
  if (state.zoom === "fit") scale = Math.min(1, (stage.clientWidth - 2) / w, (stage.clientHeight - 2) / h);
  compare.style.width = `${Math.round(w * scale)}px`;
  compare.style.height = `${Math.round(h * scale)}px`;
  stage.classList.toggle("actual", state.zoom !== "fit");
}

function setZoom(zoom) {
  state.zoom = zoom;
  $("zoom-fit").classList.toggle("on", zoom === "fit");
  $("zoom-1").classList.toggle("on", zoom !== "fit");
  layout();
}

function setSplit(percent) {
  const value = Math.min(100, Math.max(0, percent));
  $("compare").style.setProperty("--split", `${value}%`);
  $("split").value = String(value);
}

function setUpCompare() {
  const compare = $("compare");
  $("split").addEventListener("input", (e) => setSplit(Number(e.target.value)));
  const follow = (e) => {
    const box = compare.getBoundingClientRect();
    setSplit(((e.clientX - box.left) / box.width) * 100);
  };
  compare.addEventListener("pointerdown", (e) => { compare.setPointerCapture(e.pointerId); follow(e); });
  compare.addEventListener("pointermove", (e) => { if (compare.hasPointerCapture(e.pointerId)) follow(e); });
  $("pixelated").addEventListener("change", (e) => $("before-img").classList.toggle("pixelated", e.target.checked));
  $("zoom-fit").addEventListener("click", () => setZoom("fit"));
  $("zoom-1").addEventListener("click", () => setZoom("actual"));
  window.addEventListener("resize", layout);
}

// ---------------------------------------------------------------------------------- start
async function start() {
  setUpDrop();
  setUpCompare();
  $("go").addEventListener("click", upscaleAll);
  try {
    state.config = await api("/api/config");
  } catch (error) {
    return showMessage(`cannot reach the superres server: ${error.message}`);
  }
  const config = state.config;
  const notes = new Map(config.models.map((m) => [m.name, m.note]));
  $("model").replaceChildren(...config.models.map((m) => el("option", "", m.name)));
  $("model").value = config.default_model;
  const showNote = () => { $("model-note").textContent = notes.get($("model").value) || ""; };
  $("model").addEventListener("change", showNote);
  showNote();
  $("tile").replaceChildren(...config.tiles.map((t) => {
    const option = el("option", "", t ? `${t} px` : "whole image (no tiles)");
    option.value = String(t);
    return option;
  }));
  $("tile").value = String(config.default_tile);
  $("outscale").replaceChildren(...config.outscales.map((f) => {
    const option = el("option", "", f ? `\u00d7${f} the input` : "the model's scale");
    option.value = String(f);
    return option;
  }));
  $("outscale").value = "0";
  $("limits").textContent = `up to ${formatBytes(config.max_upload_bytes)} and ${config.max_pixels / 1e6} MP each`;
}

start();
