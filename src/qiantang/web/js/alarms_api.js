// The alarms API (when the server has it): lists, counts by severity, a table with actions.
import { api } from "./api.js";
import { badge, errorText, fmtNumber, fmtTime, h, link, table } from "./dom.js";
import { currentLang, t } from "./i18n.js";
import { session } from "./session.js";

// Admins and engineers of the alarm's enterprise handle it; others only read it.
function handles(alarm) {
  const roles = session.me?.enterprise_roles || [];
  return roles.some((r) => r.enterprise_id === alarm.enterprise_id && (r.role === "admin" || r.role === "engineer"));
}

function missing(err) {
  return err.status === 404 || err.status === 405;
}

// Alarms matching `params`, or null when the server has no alarms API.
export async function listAlarms(params = {}, cap = 500) {
  try {
    return await api.all("/alarms", params, cap);
  } catch (err) {
    if (missing(err)) {
      return null;
    }
    throw err;
  }
}

// Active alarms counted by severity, or null when the server has no alarms API.
export async function alarmCounts() {
  const alarms = await listAlarms({ status: "active" }, 2000);
  if (alarms === null) {
    return null;
  }
  const counts = {};
  for (const a of alarms) {
    counts[a.severity] = (counts[a.severity] || 0) + 1;
  }
  return counts;
}

function messageOf(alarm) {
  return (currentLang() === "en" ? alarm.message_en : alarm.message_zh) || alarm.message_zh || alarm.message_en || alarm.rule_name;
}

function actions(alarm, onChange) {
  const act = async (verb, button) => {
    button.disabled = true;
    try {
      await api.post(`/alarms/${alarm.id}/${verb}`, {});
      await onChange();
    } catch (err) {
      button.replaceWith(h("span", { class: "error" }, errorText(err)));
    }
  };
  const buttons = [];
  if (!handles(alarm)) {
    return h("span", { class: "muted" }, t("alarm.read_only"));
  }
  if (alarm.status === "active") {
    const ack = h("button", { type: "button", class: "small", dataset: { ack: alarm.id } }, t("alarm.acknowledge"));
    ack.addEventListener("click", () => act("acknowledge", ack));
    buttons.push(ack);
  }
  if (alarm.status !== "cleared") {
    const clear = h("button", { type: "button", class: "small", dataset: { clear: alarm.id } }, t("alarm.clear"));
    clear.addEventListener("click", () => act("clear", clear));
    buttons.push(clear);
  }
  return h("span", { class: "actions" }, buttons);
}

// The alarm table; with `onChange` each open alarm gets acknowledge / clear buttons.
export function alarmTable(alarms, onChange) {
  const columns = [
    { key: "alarm.severity", cell: (a) => badge(t(`severity.${a.severity}`), `sev-${a.severity}`) },
    { key: "alarm.status", cell: (a) => h("span", { dataset: { alarmStatus: a.id } }, t(`alarm.status.${a.status}`)) },
    { key: "alarm.rule", cell: (a) => a.rule_name },
    { key: "alarm.device", cell: (a) => link(`#/devices/${a.device_id}`, a.device_name || a.device_id) },
    { key: "alarm.message", cell: (a) => messageOf(a) },
    { key: "alarm.count", cell: (a) => fmtNumber(a.count) },
    { key: "alarm.raised", cell: (a) => fmtTime(a.raised_ms) },
    { key: "alarm.last", cell: (a) => fmtTime(a.last_ms) },
  ];
  if (onChange) {
    columns.push({ key: "common.actions", cell: (a) => actions(a, onChange) });
  }
  return table(columns, alarms, { class: "alarms", id: "alarm-table" });
}
