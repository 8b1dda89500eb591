// A device: facts, thing model with live values, history chart, downlink forms, logs.
import { api } from "../api.js";
import { badge, fmtTime, fmtValue, h, link, section, table } from "../dom.js";
import { t } from "../i18n.js";
import { every, openFeed } from "../live.js";
import {
  commandsTable,
  eventsTable,
  messageLogTable,
  servicesSection,
  setPropertySection,
} from "./device_actions.js";
import { historySection } from "./device_history.js";

function typeText(dt) {
  const specs = dt?.specs || {};
  const range = specs.min !== undefined || specs.max !== undefined ? ` [${specs.min ?? ""}, ${specs.max ?? ""}]` : "";
  return `${dt?.type || "?"}${range}${specs.unit ? ` ${specs.unit}` : ""}`;
}

// How a property's value reads: enum members and bool labels by name, the rest as it is.
function formatter(dt) {
  const specs = dt?.specs || {};
  if (dt?.type === "enum") {
    const names = new Map((specs.members || []).map((m) => [m.value, m.name]));
    return (v) => (names.has(v) ? `${names.get(v)} (${v})` : fmtValue(v));
  }
  if (dt?.type === "bool") {
    return (v) => (v === undefined || v === null ? "—" : `${v ? specs.true ?? "true" : specs.false ?? "false"}`);
  }
  if (dt?.type === "date") {
    return (v) => (typeof v === "number" ? fmtTime(v) : fmtValue(v));
  }
  return fmtValue;
}

function modelTable(model, latest) {
  return table(
    [
      { key: "model.identifier", cell: (p) => p.identifier },
      { key: "common.name", cell: (p) => p.name },
      { key: "model.type", cell: (p) => typeText(p.data_type) },
      { key: "model.access", cell: (p) => t(`access.${p.access_mode}`) },
      {
        key: "model.value",
        cell: (p) => h("b", { dataset: { valueOf: p.identifier } }, formatter(p.data_type)(latest[p.identifier]?.value)),
      },
      { key: "model.ts", cell: (p) => h("span", { dataset: { tsOf: p.identifier } }, fmtTime(latest[p.identifier]?.ts)) },
    ],
    model.properties || [],
    { id: "thing-model" },
  );
}

function showValues(page, properties) {
  for (const [id, point] of Object.entries(properties)) {
    const value = page.querySelector(`[data-value-of="${CSS.escape(id)}"]`);
    if (value) {
      value.textContent = (page.formats?.get(id) || fmtValue)(point.value);
      page.querySelector(`[data-ts-of="${CSS.escape(id)}"]`).textContent = fmtTime(point.ts);
    }
  }
}

// Live values: the WebSocket feed; if it is not there, poll the latest values.
function followValues(page, deviceId) {
  const mode = page.querySelector("#live-mode");
  const poll = () => {
    mode.textContent = t("device.live_polling");
    mode.dataset.live = "polling";
    every(3000, async () => showValues(page, (await api.get(`/devices/${deviceId}/properties`)).properties));
  };
  openFeed(
    { scope: "device", id: deviceId, streams: ["telemetry", "state"] },
    (frame) => {
      if (frame.type === "subscribed") {
        mode.textContent = t("device.live_feed");
        mode.dataset.live = "feed";
      } else if (frame.type === "telemetry" && frame.device_id === deviceId) {
        const points = Object.fromEntries(Object.entries(frame.values || {}).map(([k, v]) => [k, { value: v, ts: frame.ts }]));
        showValues(page, points);
      } else if (frame.type === "state" && frame.device_id === deviceId) {
        page.querySelector("#device-state")?.replaceChildren(stateBadge(frame.online));
      }
    },
    poll,
  );
}

function stateBadge(online) {
  return online ? badge(t("device.online"), "ok") : badge(t("device.offline"), "off");
}

export async function devicePage(id) {
  const device = await api.get(`/devices/${id}`);
  const modelAndLatest = Promise.all([
    api.get(`/products/${device.product_id}`),
    api.get(`/devices/${id}/properties`).catch(() => ({ properties: {} })),
  ]);
  const rest = Promise.all([
    api.get(`/enterprises/${device.enterprise_id}`).catch(() => null),
    api.get(`/devices/${id}/state`).catch(() => null),
    commandsTable(id),
    messageLogTable(id),
    eventsTable(id),
  ]);
  const [product, latest] = await modelAndLatest;
  const model = product.thing_model;
  const history = historySection(id, model, latest.properties);
  const [enterprise, state, commandRows, log, events] = await rest;
  const commands = h("div", { id: "commands-holder" }, commandRows);
  const refreshCommands = async () => commands.replaceChildren(await commandsTable(id));
  const page = h(
    "div",
    { class: "page device", id: "device-page", dataset: { deviceId: id } },
    h(
      "nav",
      { class: "crumbs" },
      link("#/overview", t("nav.overview")),
      enterprise ? [" / ", link(`#/enterprises/${enterprise.id}`, enterprise.name)] : null,
      " / ",
      h("span", {}, device.nickname || device.device_name),
    ),
    h(
      "h1",
      {},
      device.nickname || device.device_name,
      " ",
      h("span", { id: "device-state" }, stateBadge(state?.online)),
    ),
    h(
      "dl",
      { class: "facts" },
      h("dt", {}, t("device.device_name")),
      h("dd", {}, device.device_name),
      h("dt", {}, t("device.product")),
      h("dd", {}, `${product.name} (${product.product_key})`),
      h("dt", {}, t("common.identifier")),
      h("dd", {}, device.identifier),
      h("dt", {}, t("device.last_seen")),
      h("dd", {}, fmtTime(state?.last_seen_ms)),
    ),
    section("device.thing_model", h("p", { class: "muted", id: "live-mode" }, ""), modelTable(model, latest.properties)),
    history.node,
    h("div", { class: "grid2" }, setPropertySection(id, model, refreshCommands), servicesSection(id, model, refreshCommands)),
    section("device.commands", commands),
    section("device.events", events),
    section("device.message_log", log),
  );
  page.formats = new Map((model.properties || []).map((p) => [p.identifier, formatter(p.data_type)]));
  page.mounted = async () => {
    followValues(page, id);
    await history.start();
  };
  return page;
}
