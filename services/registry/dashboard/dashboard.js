// The funnel dashboard: reads GET /funnel with the form's filters and draws one bar per stage.
"use strict";
const form = document.getElementById("filters");
const TOKEN_KEY = "jakpreneur-token";

// The bearer token comes in the address's fragment (/dashboard#token=...: a fragment is never
// sent to a server, so it stays out of access logs); it is kept in this tab's sessionStorage
// (gone when the tab closes) and taken out of the address bar, history included.
function takeToken() {
  const fragment = new URLSearchParams(location.hash.slice(1));
  const token = fragment.get("token");
  if (token) {
    sessionStorage.setItem(TOKEN_KEY, token);
    history.replaceState(null, "", location.pathname + location.search);
  }
  return sessionStorage.getItem(TOKEN_KEY);
}
const token = takeToken();

function query() {
  const params = new URLSearchParams();
  for (const [name, value] of new FormData(form)) if (value) params.set(name, value);
  return params;
}

function percent(value) {
  return value === null ? "—" : (value * 100).toFixed(1) + "%";
}

async function render() {
  const params = query();
  const total = document.getElementById("total");
  if (!token) {
    total.textContent = "Perlu token: buka /dashboard#token=... (make run mencetak tautannya).";
    return;
  }
  const response = await fetch("/funnel?" + params.toString(), {
    headers: { Authorization: "Bearer " + token },
  });
  if (!response.ok) {
    const problem = await response.json().catch(() => ({}));
    total.textContent = `Ditolak (${response.status}): ${problem.error || response.statusText}`;
    return;
  }
  const funnel = await response.json();
  const scope = Object.values(funnel.scope || {}).join(" / ");
  document.getElementById("scope").textContent = scope ? `Cakupan: ${scope}` : "";
  const top = Math.max(1, ...funnel.stages.map((s) => s.count));
  total.textContent = `${funnel.participants} peserta`;
  const chart = document.getElementById("chart");
  chart.replaceChildren();
  const times = document.querySelector("#time-in-stage tbody");
  times.replaceChildren();
  for (const stage of funnel.stages) {
    const row = document.createElement("div");
    row.className = "row";
    row.dataset.stage = stage.stage;
    row.dataset.count = stage.count;
    row.dataset.conversion = stage.conversion === null ? "" : stage.conversion;
    const label = document.createElement("span");
    label.textContent = stage.stage;
    const bar = document.createElement("div");
    bar.className = "bar";
    bar.style.width = (100 * stage.count / top) + "%";
    const value = document.createElement("span");
    value.className = "value";
    value.textContent = `${stage.count} (${percent(stage.conversion)})`;
    row.append(label, bar, value);
    chart.append(row);
    const tr = document.createElement("tr");
    tr.dataset.stage = stage.stage;
    tr.innerHTML = "<td></td><td></td>";
    tr.cells[0].textContent = stage.stage;
    tr.cells[1].textContent = stage.median_days_to_next === null ? "—" : stage.median_days_to_next;
    times.append(tr);
  }
  document.getElementById("side").textContent = Object.entries(funnel.side_stages)
    .map(([name, count]) => `${name}: ${count}`).join(" · ");
  history.replaceState(null, "", "/dashboard?" + params.toString());
}

// Filters given in the address fill the form, so a filtered view can be shared as a link.
for (const [name, value] of new URLSearchParams(location.search)) {
  if (form.elements[name]) form.elements[name].value = value;
}
form.addEventListener("submit", (event) => { event.preventDefault(); render(); });
render();
