// Alarms: filter by status, acknowledge, clear.
import { alarmTable, listAlarms } from "../alarms_api.js";
import { h, section } from "../dom.js";
import { t } from "../i18n.js";

const STATUSES = ["active", "acknowledged", "cleared", ""];

export async function alarmsPage(status = "active") {
  const holder = h("div", { id: "alarms-holder" });
  const filter = h(
    "select",
    { id: "alarm-status" },
    STATUSES.map((s) => h("option", { value: s, selected: s === status }, t(s ? `alarm.status.${s}` : "alarm.all"))),
  );
  const load = async () => {
    const alarms = await listAlarms({ status: filter.value || undefined });
    holder.replaceChildren(alarms === null ? h("p", { class: "muted" }, t("alarm.unavailable")) : alarmTable(alarms, load));
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
