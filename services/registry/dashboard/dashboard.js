// The programme dashboard: reads GET /funnel with the form's filters and shows, in Bahasa
// Indonesia and the id-ID number format (377.625; 62,3%; Rp 7.500.000), the outcomes, one
// bar per stage of the 7P in programme order, and the registrations per month.
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

const STEPS = {
  P1: "Pendaftaran",
  P2: "Pelatihan",
  P3: "Pendampingan",
  P4: "Perizinan",
  P5: "Pemasaran",
  P6: "Pelaporan keuangan",
  P7: "Permodalan",
};
const STAGES = {
  "registered": "Terdaftar",
  "training-enrolled": "Ikut pelatihan",
  "training-completed": "Lulus pelatihan",
  "mentoring-assigned": "Mendapat pendamping",
  "mentoring-completed": "Selesai pendampingan",
  "product-certified": "Produk bersertifikat",
  "product-curated": "Lolos kurasi",
  "product-listed": "Tampil di kanal pemasaran",
  "export-facilitated": "Fasilitasi ekspor",
  "sales-reported": "Melaporkan penjualan",
  "naik-kelas": "Naik kelas",
  "financing-referred": "Dirujuk ke Bank DKI",
  "financing-approved": "Permodalan disetujui",
};
const SIDE = {
  "training-not-completed": "tidak lulus pelatihan",
  "financing-declined": "permodalan ditolak",
};
const CLASSES = { mikro: "Mikro", kecil: "Kecil", menengah: "Menengah", besar: "Besar" };

const number = new Intl.NumberFormat("id-ID");
const percentFormat = new Intl.NumberFormat("id-ID", { style: "percent", maximumFractionDigits: 1 });
const rupiahFormat = new Intl.NumberFormat("id-ID", {
  style: "currency", currency: "IDR", maximumFractionDigits: 0,
});
const monthFormat = new Intl.DateTimeFormat("id-ID", { month: "short", year: "numeric", timeZone: "UTC" });

function fmt(value) { return number.format(value); }
function percent(value) { return value === null ? "—" : percentFormat.format(value); }
function rupiah(value) { return rupiahFormat.format(value); }
function days(value) {
  if (value === null || value === undefined) return "—";
  const digits = value < 10 ? 1 : 0;
  return new Intl.NumberFormat("id-ID", { maximumFractionDigits: digits }).format(value) + " hari";
}
function monthName(month) {
  const [year, m] = month.split("-").map(Number);
  return monthFormat.format(new Date(Date.UTC(year, m - 1, 1)));
}
function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function query() {
  const params = new URLSearchParams();
  for (const [name, value] of new FormData(form)) if (value) params.set(name, value);
  return params;
}

function renderOutcomes(outcomes) {
  const naik = outcomes.naik_kelas;
  document.querySelector('[data-outcome="naik-kelas"]').textContent = fmt(naik.participants);
  const transitions = document.getElementById("transitions");
  transitions.replaceChildren(...naik.transitions.map((t) => {
    const item = element("li", "", `${CLASSES[t.from_class]} → ${CLASSES[t.to_class]}`);
    item.dataset.from = t.from_class;
    item.dataset.to = t.to_class;
    item.append(element("b", "", fmt(t.participants)));
    return item;
  }));
  const classes = document.getElementById("classes");
  classes.replaceChildren(...Object.entries(outcomes.business_classes).map(([name, count]) => {
    const item = element("li", "", CLASSES[name]);
    item.append(element("b", "", fmt(count)));
    return item;
  }));
  const exported = outcomes.export_facilitated;
  document.querySelector('[data-outcome="export"]').textContent = fmt(exported.participants);
  document.getElementById("export-products").textContent =
    `peserta difasilitasi ekspor, ${fmt(exported.products)} produk`;
  const financing = outcomes.financing_approved;
  const financed = document.querySelector('[data-outcome="financing"]');
  financed.textContent = fmt(financing.participants);
  financed.dataset.totalIdr = financing.total_idr;
  document.getElementById("financing-total").textContent =
    `peserta, total ${rupiah(financing.total_idr)}`;
}

function renderStages(funnel) {
  const top = Math.max(1, ...funnel.stages.map((s) => s.count));
  const counts = Object.fromEntries(funnel.stages.map((s) => [s.stage, s.count]));
  const chart = document.getElementById("chart");
  chart.replaceChildren();
  let step = null;
  for (const stage of funnel.stages) {
    if (stage.step !== step) {
      step = stage.step;
      chart.append(element("div", "step", `${step} · ${STEPS[step] || ""}`));
    }
    const row = element("div", stage.main ? "row" : "row branch");
    row.dataset.stage = stage.stage;
    row.dataset.count = stage.count;
    row.dataset.conversion = stage.conversion === null ? "" : stage.conversion;
    const label = element("span", "label", (stage.main ? "" : "↳ ") + (STAGES[stage.stage] || stage.stage));
    label.title = stage.stage;
    const track = element("div", "track");
    const bar = element("div", "bar");
    bar.style.width = (100 * stage.count / top) + "%";
    track.append(bar);
    row.append(
      label,
      track,
      element("span", "value", fmt(stage.count)),
      // no conversion from a stage no one reached (the API says 0)
      element("span", "value", stage.after && !counts[stage.after] ? "—" : percent(stage.conversion)),
      element("span", "value days", days(stage.median_days_from_previous)),
    );
    chart.append(row);
  }
  document.getElementById("side").textContent = "Di luar alur: " + Object.entries(funnel.side_stages)
    .map(([name, count]) => `${fmt(count)} ${SIDE[name] || name}`).join(", ") + ".";
}

function renderMonths(perMonth) {
  const months = document.getElementById("months");
  const top = Math.max(1, ...perMonth.map((m) => m.participants));
  months.replaceChildren(...perMonth.map((m) => {
    const column = element("div", "month");
    column.dataset.month = m.month;
    column.dataset.count = m.participants;
    const bar = element("div", "bar");
    bar.style.height = (100 * m.participants / top) + "%";
    const track = element("div", "track");
    track.append(bar);
    column.append(element("span", "value", fmt(m.participants)), track, element("span", "label", monthName(m.month)));
    return column;
  }));
  if (!perMonth.length) months.textContent = "Belum ada pendaftaran.";
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
  total.textContent = `${fmt(funnel.participants)} peserta`;
  renderOutcomes(funnel.outcomes);
  renderStages(funnel);
  renderMonths(funnel.registrations_per_month);
  history.replaceState(null, "", "/dashboard?" + params.toString());
}

// Filters given in the address fill the form, so a filtered view can be shared as a link.
for (const [name, value] of new URLSearchParams(location.search)) {
  if (form.elements[name]) form.elements[name].value = value;
}
form.addEventListener("submit", (event) => { event.preventDefault(); render(); });
render();
