// A device's history chart: server-downsampled buckets (max_points) for any range.
import { api } from "../api.js";
import { historyChart } from "../charts.js";
import { errorBox, h, section } from "../dom.js";
import { t } from "../i18n.js";

const RANGES = [
  ["1h", 3_600_000],
  ["24h", 86_400_000],
  ["7d", 7 * 86_400_000],
  ["30d", 30 * 86_400_000],
];
const CHARTABLE = new Set(["int", "float", "double", "enum", "bool"]);

export function chartableProperties(model) {
  return (model.properties || []).filter((p) => CHARTABLE.has(p.data_type?.type));
}

function fetchBuckets(deviceId, property, span, width) {
  const end = Date.now() + 1;
  return api.get(`/devices/${deviceId}/telemetry/buckets`, {
    property: property.identifier,
    start_ms: end - span,
    end_ms: end,
    max_points: Math.max(50, Math.min(1000, Math.floor(width / 2))),
  });
}

// Draw `property` over the last `span` ms (from `pending`, a buckets request already under
// way, when given); the timing lands in window.qiantang.timings.
async function draw(deviceId, property, span, holder, pending = null, started = performance.now()) {
  holder.dataset.drawn = "";
  let answer;
  try {
    answer = await (pending || fetchBuckets(deviceId, property, span, holder.clientWidth || 800));
  } catch (err) {
    holder.replaceChildren(errorBox(err));
    return;
  }
  holder.replaceChildren();
  const done = () => {
    window.qiantang.timings.history = performance.now() - started;
    window.qiantang.timings.history_since_navigation = performance.now();
    holder.dataset.drawn = String(answer.buckets.length);
    holder.dataset.bucketMs = String(answer.bucket_ms);
  };
  const end = answer.buckets.length ? Math.max(Date.now(), answer.buckets.at(-1).ts) : Date.now();
  await historyChart(holder, property.name, answer.buckets, [end - span, end], done);
  if (answer.buckets.length === 0) {
    done();
  }
}

// The history section; it starts on the first chartable property that has a value.
export function historySection(deviceId, model, latest = {}) {
  const props = chartableProperties(model);
  const numeric = (p) => ["int", "float", "double"].includes(p.data_type.type);
  const first =
    props.find((p) => numeric(p) && p.identifier in latest) || props.find((p) => p.identifier in latest) || props[0];
  if (props.length === 0) {
    return { node: section("device.history", h("p", { class: "muted" }, t("device.no_chartable"))), start: () => {} };
  }
  const holder = h("div", { class: "chart tall", id: "history-chart" });
  const propSelect = h(
    "select",
    { id: "history-property" },
    props.map((p) => h("option", { value: p.identifier, selected: p === first }, `${p.name} · ${p.identifier}`)),
  );
  const rangeSelect = h(
    "select",
    { id: "history-range" },
    RANGES.map(([key, ms]) => h("option", { value: String(ms), selected: key === "24h" }, t(`range.${key}`))),
  );
  const chosen = () => props.find((p) => p.identifier === propSelect.value) || props[0];
  const redraw = () => {
    holder.replaceChildren();
    return draw(deviceId, chosen(), Number(rangeSelect.value), holder);
  };
  propSelect.addEventListener("change", redraw);
  rangeSelect.addEventListener("change", redraw);
  // The first request leaves at once (the page is still being built); it is drawn on mount.
  const started = performance.now();
  const first24h = fetchBuckets(deviceId, first, Number(rangeSelect.value), Math.min(window.innerWidth, 1400) - 80);
  first24h.catch(() => {});
  const start = () => draw(deviceId, chosen(), Number(rangeSelect.value), holder, first24h, started);
  const controls = h("div", { class: "controls" }, h("label", {}, t("device.property"), propSelect), h("label", {}, t("device.range"), rangeSelect));
  return { node: section("device.history", controls, holder), start };
}
