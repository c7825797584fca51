// StatsCache's dashboard page: every view of the caller's role as a card, kept current by one live stream.
// The token comes from the URL fragment (#token=..., never sent to a server) or the paste box, is kept for this
// tab only, and travels only in the Authorization header: fetch reads the stream, since EventSource cannot send it.
"use strict";

const TOKEN_KEY = "statscache.token";
const $ = (id) => document.getElementById(id);
const cards = new Map(); // view name -> card element
let stream = null; // the AbortController of the open stream

function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (name === "text") node.textContent = value;
    else node.setAttribute(name, value);
  }
  node.append(...children);
  return node;
}

function svg(tag, attributes = {}) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  return node;
}

function setStatus(text, isError = false) {
  $("status").textContent = text;
  $("status").classList.toggle("error", isError);
}

const label = (name) => name.replaceAll("_", " ");
const isDate = (value) => typeof value === "string" && /^\d{4}-\d{2}-\d{2}/.test(value);
const number = new Intl.NumberFormat(undefined, { maximumFractionDigits: 2 });

function format(value) {
  if (value === null || value === undefined) return "–";
  if (typeof value === "number") return number.format(value);
  if (isDate(value) && value.length > 10) return new Date(value).toLocaleString();
  if (typeof value === "object") return JSON.stringify(value);
  return String(value);
}

// A row: its values as key figures.
function figures(row) {
  const list = el("dl", { class: "figures" });
  for (const [name, value] of Object.entries(row)) {
    list.append(el("div", {}, el("dt", { text: label(name) }), el("dd", { text: format(value) })));
  }
  return list;
}

function table(rows, caption) {
  const columns = Object.keys(rows[0]);
  const head = el("tr", {}, ...columns.map((c) => el("th", { scope: "col", text: label(c) })));
  const body = rows.map((row) => el("tr", {}, ...columns.map((c) =>
    el("td", { class: typeof row[c] === "number" ? "num" : "", text: format(row[c]) }))));
  return el("div", { class: "scroll", tabindex: "0", role: "region", "aria-label": caption },
    el("table", {}, el("caption", { text: caption }), el("thead", {}, head), el("tbody", {}, ...body)));
}

// A series (rows whose first column is a date): a bar chart of one measure, chosen with a select, and its table.
function chart(rows, title, id) {
  const dateColumn = Object.keys(rows[0])[0];
  const measures = Object.keys(rows[0]).filter((c) => typeof rows[0][c] === "number");
  const figure = el("figure");
  const picker = el("select", { id: `${id}-measure` }, ...measures.map((m) => el("option", { value: m, text: label(m) })));
  const drawing = el("div");
  const draw = () => {
    const measure = picker.value;
    const values = rows.map((r) => Number(r[measure]) || 0);
    const max = Math.max(...values, 1);
    const width = 320, height = 120, gap = 2, bottom = 16;
    const barWidth = Math.max(1, (width - gap * values.length) / values.length);
    const picture = svg("svg", { class: "chart", viewBox: `0 0 ${width} ${height}`, role: "img",
      "aria-label": `${label(measure)} by ${label(dateColumn)}, ${rows.length} points, highest ${format(max)}` });
    values.forEach((value, i) => {
      const h = (value / max) * (height - bottom - 4);
      const bar = svg("rect", { class: "bar", x: i * (barWidth + gap), y: height - bottom - h, width: barWidth, height: h });
      bar.append(svg("title"));
      bar.firstChild.textContent = `${rows[i][dateColumn]}: ${format(value)}`;
      picture.append(bar);
    });
    picture.append(svg("line", { class: "axis", x1: 0, x2: width, y1: height - bottom, y2: height - bottom }));
    const first = svg("text", { x: 0, y: height - 3 });
    first.textContent = String(rows[0][dateColumn]).slice(0, 10);
    const last = svg("text", { x: width, y: height - 3, "text-anchor": "end" });
    last.textContent = String(rows[rows.length - 1][dateColumn]).slice(0, 10);
    picture.append(first, last);
    drawing.replaceChildren(picture);
  };
  picker.addEventListener("change", draw);
  draw();
  figure.append(el("figcaption", {}, el("label", { for: picker.id, text: `${title}:` }), picker), drawing,
    el("details", {}, el("summary", { text: "Show as a table" }), table(rows, title)));
  return figure;
}

function part(name, value, id) {
  const section = el("section", { class: "part" }, el("h3", { text: label(name) }));
  if (value === null || (Array.isArray(value) && value.length === 0)) {
    section.append(el("p", { class: "empty", text: "Nothing yet." }));
  } else if (Array.isArray(value)) {
    section.append(isDate(Object.values(value[0])[0]) ? chart(value, label(name), id) : table(value, label(name)));
  } else if (typeof value === "object") {
    section.append(figures(value));
  } else {
    section.append(el("p", { text: format(value) }));
  }
  return section;
}

function card(view) {
  const heading = el("h2", { id: `view-${view}`, text: label(view) });
  const node = el("article", { class: "card", "aria-labelledby": heading.id, "data-view": view },
    heading, el("div", { class: "meta" }, el("span", { text: "Loading…" })));
  cards.set(view, node);
  return node;
}

// One event's slot: the view's answer, or the problem it got instead.
function show(view, slot) {
  const node = cards.get(view);
  if (!node) return;
  const meta = el("div", { class: "meta" });
  const body = [];
  if (slot.data !== undefined) {
    const asOf = new Date(slot.asOf);
    meta.append(el("span", {}, "As of ", el("time", { datetime: slot.asOf, text: asOf.toLocaleTimeString() })));
    if (slot.stale) meta.append(el("span", { class: "badge stale", text: "stale", title: "Refreshing failed or is late: these numbers may be old." }));
    const parameters = Object.entries(slot.parameters || {}).map(([k, v]) => `${label(k)} ${v}`).join(", ");
    if (parameters) meta.append(el("span", { text: parameters }));
    for (const [name, value] of Object.entries(slot.data)) body.push(part(name, value, `${view}-${name}`));
  } else {
    meta.append(el("span", { class: "badge problem", text: String(slot.status || "error") }), el("span", { text: slot.title || "Unavailable" }));
  }
  node.replaceChildren(node.querySelector("h2"), meta, ...body);
  node.dataset.asOf = slot.asOf || "";
  node.classList.remove("updated");
  void node.offsetWidth; // restart the highlight
  node.classList.add("updated");
}

async function api(path, token, signal) {
  const response = await fetch(path, { headers: { Authorization: `Bearer ${token}`, Accept: "application/json, text/event-stream" }, signal });
  if (!response.ok) {
    let title = `${response.status} ${response.statusText}`;
    try { title = (await response.json()).title || title; } catch { /* not problem details */ }
    const error = new Error(title);
    error.status = response.status;
    error.retryAfter = Number(response.headers.get("Retry-After")) || 0;
    throw error;
  }
  return response;
}

// Server-sent events from a fetch body: frames end with a blank line; 'data' lines join with line feeds.
async function readEvents(response, onEvent) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value.replace(/\r\n?/g, "\n"); // the server writes \n; any line break is one
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const frame = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let name = "message";
      const data = [];
      for (const line of frame.split("\n")) {
        if (line.startsWith(":")) continue; // heartbeat
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        const text = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
        if (field === "event") name = text;
        else if (field === "data") data.push(text);
      }
      if (data.length) onEvent(name, JSON.parse(data.join("\n")));
    }
  }
}

async function live(token, views) {
  let delay = 1000;
  for (;;) {
    stream = new AbortController();
    let expired = false;
    try {
      const query = views.map((v) => `view=${encodeURIComponent(v)}`).join("&");
      const response = await api(`/api/dashboards/live?${query}`, token, stream.signal);
      setStatus("Live: cards update as the numbers change.");
      delay = 1000;
      await readEvents(response, (name, slot) => {
        if (name === "expired") {
          expired = true;
          return;
        }
        show(name, slot);
        $("status").textContent = `Live: ${label(name)} updated at ${new Date().toLocaleTimeString()}.`;
      });
    } catch (error) {
      if (error.name === "AbortError") return;
      if (error.status === 401) expired = true;
      else {
        setStatus(`Connection lost (${error.message}); retrying…`, true);
        delay = Math.max(delay, (error.retryAfter || 0) * 1000);
      }
    }
    if (expired) {
      signOut("Your token has expired: paste a new one.");
      return;
    }
    await new Promise((resolve) => setTimeout(resolve, delay));
    delay = Math.min(delay * 2, 30000);
  }
}

async function start(token) {
  $("token-form").hidden = true;
  setStatus("Loading your dashboards…");
  try {
    const list = await (await api("/api/dashboards", token)).json();
    sessionStorage.setItem(TOKEN_KEY, token);
    $("who").textContent = `Site ${list.site} · ${list.role} · user ${list.user}`;
    $("who").hidden = false;
    $("sign-out").hidden = false;
    const views = list.views.map((v) => v.name);
    $("cards").replaceChildren(...views.map(card));
    if (views.length === 0) setStatus("Your role has no dashboards.");
    else live(token, views);
  } catch (error) {
    signOut(error.status === 401 ? "This token is not accepted: paste a valid access token." : `Could not load the dashboards: ${error.message}`);
  }
}

function signOut(message) {
  stream?.abort();
  sessionStorage.removeItem(TOKEN_KEY);
  cards.clear();
  $("cards").replaceChildren();
  $("who").hidden = true;
  $("sign-out").hidden = true;
  $("token-form").hidden = false;
  setStatus(message, Boolean(message));
  $("token").focus();
}

document.addEventListener("DOMContentLoaded", () => {
  $("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const token = $("token").value.trim();
    $("token").value = "";
    if (token) start(token);
  });
  $("sign-out").addEventListener("click", () => signOut(""));

  // A token in the fragment is taken once and removed from the address bar and history.
  const fromFragment = new URLSearchParams(location.hash.slice(1)).get("token");
  if (fromFragment) history.replaceState(null, "", location.pathname + location.search);
  const token = fromFragment || sessionStorage.getItem(TOKEN_KEY);
  if (token) start(token);
  else signOut("");
});
