// An enterprise: its facts, products, devices with live status, and alarms.
import { api } from "../api.js";
import { alarmTable, listAlarms } from "../alarms_api.js";
import { badge, fmtTime, h, link, section, table } from "../dom.js";
import { t } from "../i18n.js";
import { every, openFeed } from "../live.js";

const STATE_CAP = 200;

function stateBadge(state) {
  if (!state) {
    return badge(t("device.unknown"), "muted");
  }
  return state.online ? badge(t("device.online"), "ok") : badge(t("device.offline"), "off");
}

async function states(devices) {
  const shown = devices.slice(0, STATE_CAP);
  const answers = await Promise.all(shown.map((d) => api.get(`/devices/${d.id}/state`).catch(() => null)));
  return new Map(shown.map((d, i) => [d.id, answers[i]]));
}

function deviceRows(devices, products, known) {
  return table(
    [
      { key: "common.name", cell: (d) => link(`#/devices/${d.id}`, d.nickname || d.device_name, { dataset: { deviceId: d.id } }) },
      { key: "device.device_name", cell: (d) => d.device_name },
      { key: "device.product", cell: (d) => products.get(d.product_id)?.name || d.product_id },
      { key: "device.status", cell: (d) => h("span", { class: "state", dataset: { stateOf: d.id } }, stateBadge(known.get(d.id))) },
      { key: "device.last_seen", cell: (d) => h("span", { dataset: { seenOf: d.id } }, fmtTime(known.get(d.id)?.last_seen_ms)) },
      { key: "device.enabled", cell: (d) => (d.enabled ? t("common.yes") : t("common.no")) },
    ],
    devices,
    { id: "devices" },
  );
}

function showState(page, id, state) {
  page.querySelector(`[data-state-of="${id}"]`)?.replaceChildren(stateBadge(state));
  const seen = page.querySelector(`[data-seen-of="${id}"]`);
  if (seen && state?.last_seen_ms) {
    seen.textContent = fmtTime(state.last_seen_ms);
  }
}

// Live status: state frames of the enterprise over the feed; polling if it is not there.
function followStates(page, enterpriseId, devices) {
  const poll = () =>
    every(5000, async () => {
      for (const [id, state] of await states(devices)) {
        showState(page, id, state);
      }
    });
  openFeed(
    { scope: "enterprise", id: enterpriseId, streams: ["state", "telemetry"] },
    (frame) => {
      if (frame.type === "state") {
        showState(page, frame.device_id, { online: frame.online, last_seen_ms: frame.ts });
      } else if (frame.type === "telemetry") {
        showState(page, frame.device_id, { online: true, last_seen_ms: frame.ts });
      }
    },
    poll,
  );
}

export async function enterprisePage(id) {
  const enterprise = await api.get(`/enterprises/${id}`);
  const [home, productList, devices, alarms] = await Promise.all([
    api.get(`/platforms/${enterprise.home_platform_id}`).catch(() => null),
    api.all("/products", { enterprise_id: id }).catch(() => []),
    api.all("/devices", { enterprise_id: id }).catch(() => []),
    listAlarms({ enterprise_id: id, status: "open" }),
  ]);
  const products = new Map(productList.map((p) => [p.id, p]));
  const known = await states(devices);
  const page = h(
    "div",
    { class: "page enterprise", id: "enterprise-page", dataset: { enterpriseId: id } },
    h(
      "nav",
      { class: "crumbs" },
      link("#/overview", t("nav.overview")),
      home ? [" / ", link(`#/platforms/${home.id}`, home.name)] : null,
      " / ",
      h("span", {}, enterprise.name),
    ),
    h("h1", {}, enterprise.name),
    h(
      "dl",
      { class: "facts" },
      h("dt", {}, t("enterprise.credit_code")),
      h("dd", {}, enterprise.credit_code),
      h("dt", {}, t("enterprise.industry")),
      h("dd", {}, enterprise.industry_code),
      h("dt", {}, t("enterprise.region")),
      h("dd", {}, enterprise.region_code),
      h("dt", {}, t("common.identifier")),
      h("dd", {}, enterprise.identifier),
    ),
    section(
      "enterprise.products",
      table(
        [
          { key: "common.name", cell: (p) => p.name },
          { key: "product.key", cell: (p) => p.product_key },
          { key: "product.node_type", cell: (p) => p.node_type },
          { key: "product.model_version", cell: (p) => p.thing_model_version },
        ],
        productList,
        { id: "products" },
      ),
    ),
    alarms ? section("enterprise.alarms", alarmTable(alarms, null)) : null,
    section("enterprise.devices", h("p", { class: "muted" }, t("enterprise.device_count", { n: devices.length })), deviceRows(devices, products, known)),
  );
  page.mounted = () => followStates(page, id, devices);
  return page;
}
