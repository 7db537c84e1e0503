// The funnel dashboard: reads GET /funnel with the form's filters and draws one bar per stage.
"use strict";
const form = document.getElementById("filters");

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
  const response = await fetch("/funnel?" + params.toString());
  const funnel = await response.json();
  const top = Math.max(1, ...funnel.stages.map((s) => s.count));
  document.getElementById("total").textContent = `${funnel.participants} peserta`;
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
