// facegen gallery: builds its controls from /api/models and shows faces as plain <img> tags on /api/face URLs.
// Everything a face depends on is in its URL, so the browser cache does the rest (those URLs are immutable).
"use strict";

const PAGE = 24;                      // faces per "More"
const THUMB_DISPLAY = 128;            // CSS pixels a thumbnail is about to be shown at
const MAX_SEED = Number(document.currentScript.dataset.maxSeed);

const $ = (id) => document.getElementById(id);
// attrs: the fixed attributes, name -> true (on) or false (off); an attribute not in it is "any": the server draws
// it from the seed as the training data has it (docs/SERVICE.md).
const state = { models: [], model: null, seed: 0, psi: 1, attrs: new Map(), shown: 0 };
const CYCLE = { any: "on", on: "off", off: "any" };   // what a click on a toggle makes of its state
const MARK = { any: "·", on: "✓", off: "✗" };

function currentModel() { return state.models.find((m) => m.name === state.model); }

// The smallest offered size that is at least `wanted`, so thumbnails stay crisp without wasting bytes.
function pickSize(wanted) {
  const sizes = currentModel().sizes;
  return sizes.find((s) => s >= wanted) || sizes[sizes.length - 1];
}

// The fixed attributes in manifest order, "-" before the off ones ("Male,-Smiling"), so one face has one URL (and
// one browser-cache entry); "" when none is fixed, and then no attrs parameter at all.
function attrsParam() {
  return currentModel().attributes.filter((a) => state.attrs.has(a))
    .map((a) => (state.attrs.get(a) ? a : "-" + a)).join(",");
}

function attrState(name) { return state.attrs.has(name) ? (state.attrs.get(name) ? "on" : "off") : "any"; }

function faceParams(seed, size) {
  const params = new URLSearchParams({ model: state.model, seed: String(seed) });
  if (attrsParam()) params.set("attrs", attrsParam());
  if (state.psi !== 1) params.set("psi", state.psi.toFixed(2));
  if (size && size !== currentModel().resolution) params.set("size", String(size));
  return params;
}

function faceUrl(seed, size) { return "/api/face?" + faceParams(seed, size).toString().replaceAll("%2C", ","); }

// A gallery URL whose first face is this one, enlarged on arrival: the same controls, the same face.
function pageUrl(seed, enlarge) {
  const params = new URLSearchParams();
  const fallback = state.models.find((m) => m.default);
  if (!fallback || state.model !== fallback.name) params.set("model", state.model);
  params.set("seed", String(seed));
  if (attrsParam()) params.set("attrs", attrsParam());
  if (state.psi !== 1) params.set("psi", state.psi.toFixed(2));
  return "/?" + params.toString().replaceAll("%2C", ",") + (enlarge ? "#enlarge" : "");
}

function seedAt(index) { return (state.seed + index) % (MAX_SEED + 1); }

function thumbSize() { return pickSize(Math.round(THUMB_DISPLAY * (window.devicePixelRatio || 1))); }

function makeCard(seed) {
  const item = document.createElement("li");
  item.className = "face";
  item.dataset.seed = String(seed);
  const size = thumbSize();
  item.innerHTML = `
    <button class="enlarge" type="button" aria-label="Enlarge face ${seed}">
      <img width="${size}" height="${size}" alt="Generated face, seed ${seed}">
    </button>
    <div class="meta">
      <span class="seed">#${seed}</span>
      <a class="permalink" title="Permanent link to this face">link</a>
      <a class="png" title="The PNG itself (an immutable URL)">png</a>
      <a class="download" title="Download a ${pickSize(512)} px PNG">download</a>
    </div>`;
  item.querySelector(".enlarge").addEventListener("click", () => openLightbox(seed));
  item.querySelector("img").addEventListener("error", retryImage);
  updateCard(item);
  return item;
}

function updateCard(item) {
  const seed = Number(item.dataset.seed);
  const size = thumbSize();
  const img = item.querySelector("img");
  img.width = size; img.height = size;
  img.dataset.retries = "0";
  img.src = faceUrl(seed, size);
  item.querySelector(".permalink").href = pageUrl(seed, true);
  item.querySelector(".png").href = faceUrl(seed);
  const download = item.querySelector(".download");
  download.href = faceUrl(seed, pickSize(512));
  download.download = `face-${state.model}-${seed}.png`;
}

// A busy server answers 503 (its queue is full): try a face again a little later, a few times.
function retryImage(event) {
  const img = event.target;
  const retries = Number(img.dataset.retries || 0);
  if (retries >= 3) { showError("Some faces could not be loaded; the server may be busy."); return; }
  img.dataset.retries = String(retries + 1);
  const src = img.getAttribute("src");
  setTimeout(() => { if (img.getAttribute("src") === src) { img.removeAttribute("src"); img.src = src; } },
             500 * 2 ** retries);
}

// What is fixed, and where the rest comes from: whole training rows (table) or each attribute's frequency.
function describeAttributes() {
  const model = currentModel();
  if (model.attributes.length === 0) return "no attributes (unconditional model)";
  const fixed = model.attributes.filter((a) => state.attrs.has(a))
    .map((a) => `${a.replaceAll("_", " ")} ${state.attrs.get(a) ? "on" : "off"}`);
  const rest = model.attribute_sampling === "table"
    ? "follow the training data (each face a real attribute combination)"
    : "follow the training frequencies, each on its own (this model has no attribute table)";
  if (fixed.length === 0) return `no attribute fixed: all ${rest}`;
  if (fixed.length === model.attributes.length) return `all fixed: ${fixed.join(", ")}`;
  return `fixed: ${fixed.join(", ")}; the rest ${rest}`;
}

function describeView() {
  const model = currentModel();
  $("summary").textContent = `${state.shown} faces from seed ${state.seed} · ${model.name}, ${model.resolution} px` +
    ` · ${describeAttributes()}` + (state.psi !== 1 ? ` · ψ ${state.psi.toFixed(2)}` : "");
}

function addFaces(count) {
  const grid = $("grid");
  const fragment = document.createDocumentFragment();
  for (let i = 0; i < count; i++) fragment.appendChild(makeCard(seedAt(state.shown + i)));
  grid.appendChild(fragment);
  state.shown += count;
  describeView();
}

function resetGrid() {
  $("grid").replaceChildren();
  state.shown = 0;
  addFaces(PAGE);
}

function refreshFaces() {
  for (const item of $("grid").children) updateCard(item);
  describeView();
  saveState();
}

// The page's own URL mirrors the controls, so copying it shares exactly this view.
function saveState() {
  const params = new URLSearchParams();
  const fallback = state.models.find((m) => m.default);
  if (!fallback || state.model !== fallback.name) params.set("model", state.model);
  params.set("seed", String(state.seed));
  if (attrsParam()) params.set("attrs", attrsParam());
  if (state.psi !== 1) params.set("psi", state.psi.toFixed(2));
  history.replaceState(null, "", "?" + params.toString().replaceAll("%2C", ","));
}

// One toggle per attribute with three states, each shown by a symbol and a word, not by colour alone:
// "· any" (drawn from the seed as the data has it), "✓ on", "✗ off". A click moves any -> on -> off -> any.
function buildAttributeBoxes() {
  const model = currentModel();
  const boxes = $("attribute-boxes");
  boxes.replaceChildren();
  $("attributes").hidden = model.attributes.length === 0;
  for (const name of model.attributes) {
    boxes.appendChild(threeStateToggle(name, state.attrs, attrState, syncToggle, refreshFaces));
  }
}

// An attribute button whose click cycles any -> on -> off in `attrs` (name -> true/false; absent is "any"), then
// redraws it with `sync` and calls `changed`. `extra` is markup between the name and the state word.
function threeStateToggle(name, attrs, stateOf, sync, changed, extra = "") {
  const toggle = document.createElement("button");
  toggle.type = "button";
  toggle.className = "toggle";
  toggle.dataset.attr = name;
  toggle.innerHTML = '<span class="mark" aria-hidden="true"></span><span class="name"></span>' + extra +
    '<span class="word"></span>';
  toggle.querySelector(".name").textContent = name.replaceAll("_", " ");
  toggle.addEventListener("click", () => {
    const next = CYCLE[stateOf(name)];
    if (next === "any") attrs.delete(name); else attrs.set(name, next === "on");
    sync(toggle);
    changed();
  });
  sync(toggle);
  return toggle;
}

function syncToggle(toggle) {
  const name = toggle.dataset.attr;
  const now = attrState(name);
  toggle.dataset.state = now;
  toggle.querySelector(".mark").textContent = MARK[now];
  toggle.querySelector(".word").textContent = now;
  toggle.setAttribute("aria-label", `${name.replaceAll("_", " ")}: ${now}`);
  toggle.title = `${name}: ${now} (click for ${CYCLE[now]})`;
}

function resetAttributes() {
  state.attrs.clear();
  for (const toggle of $("attribute-boxes").children) syncToggle(toggle);
  refreshFaces();
}

function selectModel(name) {
  state.model = name;
  // Keep the states of the attributes this model also has; names match case-insensitively, like the API (shared
  // links); the others are dropped (another model's names would be refused).
  const byLower = new Map(currentModel().attributes.map((a) => [a.toLowerCase(), a]));
  state.attrs = new Map([...state.attrs].filter(([a]) => byLower.has(a.toLowerCase()))
    .map(([a, on]) => [byLower.get(a.toLowerCase()), on]));
  buildAttributeBoxes();
}

function openLightbox(seed) {
  const big = pickSize(512);
  const image = $("lightbox-image");
  image.width = big; image.height = big;
  image.src = faceUrl(seed, big);
  image.alt = `Generated face, seed ${seed}, ${big} px`;
  $("lightbox-caption").textContent = `seed ${seed} · ${state.model}`;
  $("lightbox-permalink").href = pageUrl(seed, true);
  $("lightbox-png").href = faceUrl(seed);
  const download = $("lightbox-download");
  download.href = faceUrl(seed, big);
  download.download = `face-${state.model}-${seed}.png`;
  const morph = faceParams(seed);
  morph.delete("seed");
  morph.set("from", String(seed));
  morph.set("to", String((seed + 1) % (MAX_SEED + 1)));
  morph.set("steps", "24");
  $("lightbox-morph").href = "/api/interpolate?" + morph.toString().replaceAll("%2C", ",");
  showFaceAttributes(seed);
  $("lightbox").showModal();
}

// The attributes this face was made with, from the headers of its (browser-cached, immutable) PNG.
async function showFaceAttributes(seed) {
  const line = $("lightbox-attributes");
  line.textContent = "";
  const url = faceUrl(seed);
  try {
    const response = await fetch(url);
    if (!response.ok || $("lightbox-png").getAttribute("href") !== url) return;
    const on = response.headers.get("X-Attributes");
    const matched = response.headers.get("X-Attributes-Matched");
    const names = on ? on.split(",").map((a) => a.replaceAll("_", " ")).join(", ") : "none";
    const origin = matched === "nearest"
      ? "no training face has the fixed combination: the rest comes from the nearest ones"
      : matched === "exact" ? "a combination from the training data" : "each drawn on its own";
    line.textContent = `on: ${names} (${origin})`;
    line.dataset.explicit = response.headers.get("X-Attributes-Explicit") || "";
  } catch (error) {
    line.textContent = "";
  }
}

function showError(message) {
  const status = $("status");
  status.textContent = message;
  status.classList.toggle("error", Boolean(message));
}

// --- Edit a photo -----------------------------------------------------------------------------------------------
// A portrait chosen or dropped in the panel is POSTed to /api/edit?format=json (multipart, field "image") with the
// attribute changes; the answer holds the framed input, the rebuilt face and the edited face as PNG data URLs and
// what the encoder found. The photo stays in this page's memory only, and is sent again when a toggle changes.
// Toggles have the gallery's three states, except that "any" here means "as found" (the encoder's own reading).
const edit = { photo: null, model: null, method: null, attrs: new Map(), found: null, sequence: 0 };
// The picker's words for /api/edit's methods (the model's list and default come from /api/models).
const METHOD_WORDS = {
  "pti-photo": "tuned to your photo, slower",
  photo: "the change on your photo, fastest",
  pti: "the tuned generator's face",
  generator: "the generator's face",
};
const EDIT_WORD = { any: "as found", on: "on", off: "off" };
const EDIT_DISPLAY = 256;             // CSS pixels each of the three faces is shown at

function editModel() { return state.models.find((m) => m.name === edit.model); }

function editState(name) { return edit.attrs.has(name) ? (edit.attrs.get(name) ? "on" : "off") : "any"; }

function editAttrsParam() {
  return editModel().attributes.filter((a) => edit.attrs.has(a))
    .map((a) => (edit.attrs.get(a) ? a : "-" + a)).join(",");
}

function editSize() {
  const wanted = Math.round(EDIT_DISPLAY * (window.devicePixelRatio || 1));
  const sizes = editModel().sizes;
  return sizes.find((s) => s >= wanted) || sizes[sizes.length - 1];
}

function probability(name) {
  const found = edit.found && edit.found.attributes;
  return found && name in found ? found[name] : null;
}

function buildEditToggles() {
  const boxes = $("edit-boxes");
  boxes.replaceChildren();
  for (const name of editModel().attributes) {
    boxes.appendChild(threeStateToggle(name, edit.attrs, editState, syncEditToggle, runEdit,
                                       '<span class="prob"></span>'));
  }
}

function syncEditToggle(toggle) {
  const name = toggle.dataset.attr;
  const now = editState(name);
  const p = probability(name);
  toggle.dataset.state = now;
  toggle.querySelector(".mark").textContent = MARK[now];
  toggle.querySelector(".word").textContent = EDIT_WORD[now];
  // The encoder's probability and what it makes of it (on from 0.5): the state "as found" stands for.
  toggle.querySelector(".prob").textContent = p === null ? "" : `${p.toFixed(2)} ${p >= 0.5 ? "on" : "off"}`;
  const found = p === null ? "" : `, found ${p >= 0.5 ? "on" : "off"} (${p.toFixed(2)})`;
  toggle.setAttribute("aria-label", `${name.replaceAll("_", " ")}: ${EDIT_WORD[now]}${found}`);
  toggle.title = `${name}: ${EDIT_WORD[now]}${found} (click for ${EDIT_WORD[CYCLE[now]]})`;
}

function syncEditToggles() { for (const toggle of $("edit-boxes").children) syncEditToggle(toggle); }

function showEditStatus(message, isError) {
  const status = $("edit-status");
  status.textContent = message;
  status.classList.toggle("error", Boolean(isError));
}

function clearEditFaces() {
  for (const id of ["edit-framed", "edit-rebuilt", "edit-edited", "edit-photo"]) $(id).removeAttribute("src");
  $("edit-download").hidden = true;
  $("edit-photo-download").hidden = true;
  $("edit-summary").textContent = "";
}

// What the encoder found and what is changed, in words.
function describeEdit(body) {
  const names = editModel().attributes;
  const found = names.map((a) => `${a.replaceAll("_", " ")} ${body.attributes[a].toFixed(2)}`).join(", ");
  const changed = names.filter((a) => edit.attrs.has(a))
    .map((a) => `${a.replaceAll("_", " ")} ${edit.attrs.get(a) ? "on" : "off"}`);
  const face = body.faces_found > 1 ? `the largest of ${body.faces_found} faces` : "one face";
  return `${face} · found: ${found} · ` + (changed.length ? `changed: ${changed.join(", ")}` : "nothing changed");
}

async function runEdit() {
  if (!edit.photo) return;
  const sequence = ++edit.sequence;
  const model = editModel();
  const params = new URLSearchParams({ model: model.name, format: "json", method: edit.method });
  const size = editSize();
  if (size !== model.resolution) params.set("size", String(size));
  if (editAttrsParam()) params.set("attrs", editAttrsParam());
  const form = new FormData();
  form.append("image", edit.photo, edit.photo.name || "photo");
  const panel = $("edit");
  panel.dataset.busy = "";
  showEditStatus("Editing…", false);
  try {
    const response = await fetch("/api/edit?" + params.toString().replaceAll("%2C", ","),
                                 { method: "POST", body: form });
    const body = await response.json();
    if (sequence !== edit.sequence) return;     // a newer edit is on its way
    if (!response.ok) {
      edit.found = null;
      clearEditFaces();
      syncEditToggles();
      showEditStatus(body.error || `The server answered ${response.status}.`, true);
      return;
    }
    edit.found = body;
    $("edit-framed").src = body.images.framed;
    $("edit-rebuilt").src = body.images.rebuilt;
    $("edit-edited").src = body.images.edited;
    const download = $("edit-download");
    download.href = body.images.edited;
    download.download = `edited-${model.name}${editAttrsParam() ? "-" + editAttrsParam() : ""}.png`;
    // The whole photo, the edited face put back where it was found (the photo's own size, at most 1024 px).
    $("edit-photo").src = body.images.photo;
    const photoDownload = $("edit-photo-download");
    photoDownload.href = body.images.photo;
    photoDownload.download = `photo-edited-${model.name}${editAttrsParam() ? "-" + editAttrsParam() : ""}.png`;
    photoDownload.hidden = false;
    download.hidden = false;
    syncEditToggles();
    $("edit-summary").textContent = describeEdit(body);
    showEditStatus("", false);
  } catch (error) {
    if (sequence === edit.sequence) showEditStatus(`Cannot edit the photo: ${error.message}`, true);
  } finally {
    if (sequence === edit.sequence) delete panel.dataset.busy;
  }
}

function setEditPhoto(file) {
  if (!file) return;
  edit.photo = file;
  edit.found = null;
  clearEditFaces();
  syncEditToggles();
  runEdit();
}

function selectEditModel(name) {
  edit.model = name;
  const byLower = new Map(editModel().attributes.map((a) => [a.toLowerCase(), a]));
  edit.attrs = new Map([...edit.attrs].filter(([a]) => byLower.has(a.toLowerCase()))
    .map(([a, on]) => [byLower.get(a.toLowerCase()), on]));
  edit.found = null;
  buildEditToggles();
  buildMethodPicker();
}

// The model's methods, its default chosen unless the method picked before is one of them too.
function buildMethodPicker() {
  const model = editModel();
  const select = $("edit-method");
  const label = (m) => `${m}: ${METHOD_WORDS[m] || m}${m === model.edit_method ? " (default)" : ""}`;
  select.replaceChildren(...model.edit_methods.map((m) => new Option(label(m), m)));
  if (!model.edit_methods.includes(edit.method)) edit.method = model.edit_method;
  select.value = edit.method;
}

function setupEdit(defaultModel) {
  const able = state.models.filter((m) => m.can_encode);
  const panel = $("edit");
  if (location.hash === "#edit") panel.open = true;
  if (able.length === 0) {
    $("edit-note").textContent = "(no model served here can encode photos)";
    $("edit-file").disabled = true;
    $("edit-method").disabled = true;
    $("edit-attributes").hidden = true;
    showEditStatus("None of the models served here has an encoder, so photos cannot be edited.", false);
    return;
  }
  const select = $("edit-model");
  for (const model of able) select.add(new Option(`${model.name} (${model.resolution} px)`, model.name));
  selectEditModel(able.some((m) => m.name === defaultModel) ? defaultModel : able[0].name);
  select.value = edit.model;
  select.addEventListener("change", () => { selectEditModel(select.value); clearEditFaces(); runEdit(); });
  $("edit-method").addEventListener("change", (event) => { edit.method = event.target.value; runEdit(); });
  $("edit-file").addEventListener("change", (event) => setEditPhoto(event.target.files[0]));
  $("edit-reset").addEventListener("click", () => { edit.attrs.clear(); syncEditToggles(); runEdit(); });
  // A photo dropped anywhere on the panel; the browser must not open it in place of the page.
  const drop = $("edit-drop");
  panel.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
  panel.addEventListener("dragleave", () => drop.classList.remove("over"));
  panel.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    panel.open = true;
    setEditPhoto(event.dataTransfer.files[0]);
  });
}

function randomSeed() {
  const words = new Uint32Array(1);
  crypto.getRandomValues(words);
  return words[0];
}

function readQuery() {
  const query = new URLSearchParams(location.search);
  const seed = Number(query.get("seed"));
  state.seed = query.has("seed") && Number.isInteger(seed) && seed >= 0 && seed <= MAX_SEED ? seed : randomSeed();
  const psi = Number(query.get("psi"));
  if (query.has("psi") && psi > 0 && psi <= 1) state.psi = psi;
  // attrs=Male,-Smiling: Male on, Smiling off, the rest any (names checked against the model in selectModel).
  if (query.has("attrs")) {
    for (const item of query.get("attrs").split(",").map((a) => a.trim()).filter(Boolean)) {
      if (item.startsWith("-")) state.attrs.set(item.slice(1), false); else state.attrs.set(item, true);
    }
  }
  return query.get("model");
}

async function start() {
  const wantedModel = readQuery();
  const enlargeFirst = location.hash === "#enlarge";   // read now: saveState() rewrites the URL without it
  let listing;
  try {
    const response = await fetch("/api/models");
    if (!response.ok) throw new Error(`/api/models answered ${response.status}`);
    listing = await response.json();
  } catch (error) {
    showError(`Cannot list the models: ${error.message}`);
    return;
  }
  state.models = listing.models;
  const select = $("model");
  for (const model of state.models) {
    const option = new Option(`${model.name} (${model.resolution} px)`, model.name);
    select.add(option);
  }
  const names = state.models.map((m) => m.name);
  selectModel(names.includes(wantedModel) ? wantedModel : listing.default);
  select.value = state.model;
  $("seed").value = String(state.seed);
  $("psi").value = String(state.psi);
  $("psi-value").textContent = state.psi.toFixed(2);

  select.addEventListener("change", () => { selectModel(select.value); resetGrid(); saveState(); });
  $("seed").addEventListener("change", () => {
    const seed = Number($("seed").value);
    if (!Number.isInteger(seed) || seed < 0 || seed > MAX_SEED) {
      showError(`The seed must be a whole number from 0 to ${MAX_SEED}.`);
      return;
    }
    showError("");
    state.seed = seed;
    resetGrid();
    saveState();
  });
  $("random-seed").addEventListener("click", () => {
    state.seed = randomSeed();
    $("seed").value = String(state.seed);
    showError("");
    resetGrid();
    saveState();
  });
  $("psi").addEventListener("input", () => { $("psi-value").textContent = Number($("psi").value).toFixed(2); });
  $("psi").addEventListener("change", () => { state.psi = Number($("psi").value); refreshFaces(); });
  $("attrs-reset").addEventListener("click", resetAttributes);
  // Enter in the seed box must not submit the form and reload the page (a listener: the CSP forbids inline handlers).
  $("controls").addEventListener("submit", (event) => event.preventDefault());
  $("more").addEventListener("click", () => addFaces(PAGE));
  $("lightbox").addEventListener("click", (event) => {
    if (event.target === $("lightbox")) $("lightbox").close();   // a click on the backdrop closes it
  });

  setupEdit(listing.default);
  resetGrid();
  saveState();
  // A face's permalink ends in #enlarge: show that face (the first of the grid) enlarged straight away.
  if (enlargeFirst) openLightbox(state.seed);
}

start();
