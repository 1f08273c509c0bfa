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
    const toggle = document.createElement("button");
    toggle.type = "button";
    toggle.className = "toggle";
    toggle.dataset.attr = name;
    toggle.innerHTML = '<span class="mark" aria-hidden="true"></span><span class="name"></span>' +
      '<span class="word"></span>';
    toggle.querySelector(".name").textContent = name.replaceAll("_", " ");
    toggle.addEventListener("click", () => {
      const next = CYCLE[attrState(name)];
      if (next === "any") state.attrs.delete(name); else state.attrs.set(name, next === "on");
      syncToggle(toggle);
      refreshFaces();
    });
    syncToggle(toggle);
    boxes.appendChild(toggle);
  }
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
  $("more").addEventListener("click", () => addFaces(PAGE));
  $("lightbox").addEventListener("click", (event) => {
    if (event.target === $("lightbox")) $("lightbox").close();   // a click on the backdrop closes it
  });

  resetGrid();
  saveState();
  // A face's permalink ends in #enlarge: show that face (the first of the grid) enlarged straight away.
  if (enlargeFirst) openLightbox(state.seed);
}

start();
