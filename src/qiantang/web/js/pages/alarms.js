// Alarms: filter by status, acknowledge, clear.
import { api } from "../api.js";
import { alarmTable, listAlarms } from "../alarms_api.js";
import { h, section } from "../dom.js";
import { t } from "../i18n.js";

const STATUSES = ["open", "active", "acknowledged", "cleared", ""];

export async function alarmsPage(status = "open") {
  const holder = h("div", { id: "alarms-holder" });
  const filter = h(
    "select",
    { id: "alarm-status" },
    STATUSES.map((s) => h("option", { value: s, selected: s === status }, t(s ? `alarm.status.${s}` : "alarm.all"))),
  );
  const names = new Map();
  const load = async () => {
    const alarms = await listAlarms({ status: filter.value || undefined });
    if (alarms === null) {
      holder.replaceChildren(h("p", { class: "muted" }, t("alarm.unavailable")));
      return;
    }
    const unknown = [...new Set(alarms.map((a) => a.device_id))].filter((id) => !names.has(id)).slice(0, 50);
    const found = await Promise.all(unknown.map((id) => api.get(`/devices/${id}`).catch(() => null)));
    unknown.forEach((id, i) => names.set(id, found[i] ? found[i].nickname || found[i].device_name : null));
    const named = alarms.map((a) => ({ ...a, device_name: names.get(a.device_id) || undefined }));
    holder.replaceChildren(alarmTable(named, load));
  };
  filter.addEventListener("change", load);
  await load();
  return h(
    "div",
    { class: "page alarms", id: "alarms-page" },
    h("h1", {}, t("alarm.title")),
    section("alarm.list", h("div", { class: "controls" }, h("label", {}, t("alarm.status"), filter)), holder),
  );
}
