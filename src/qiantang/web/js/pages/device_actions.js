// A device's downlink: property set and service calls (forms from the thing model),
// command history, message log and events.
import { api } from "../api.js";
import { badge, errorText, fmtTime, fmtValue, h, section, table } from "../dom.js";
import { paramsForm } from "../forms.js";
import { t } from "../i18n.js";

function commandOutcome(command) {
  const ok = command.status === "replied" && (command.code === 200 || command.code === null);
  return h(
    "div",
    { class: `outcome ${ok ? "ok" : "bad"}`, dataset: { status: command.status } },
    badge(t(`command.status.${command.status}`), ok ? "ok" : "off"),
    command.code !== null ? ` ${t("command.code")} ${command.code}` : "",
    command.message ? ` · ${command.message}` : "",
    command.output && Object.keys(command.output).length ? h("pre", { class: "output" }, JSON.stringify(command.output, null, 2)) : "",
  );
}

async function send(path, params, onDone) {
  try {
    const command = await api.post(path, { params, wait: true, timeout_s: 10 });
    onDone();
    return commandOutcome(command);
  } catch (err) {
    return h("div", { class: "outcome bad" }, errorText(err));
  }
}

export function setPropertySection(deviceId, model, onDone) {
  const writable = (model.properties || []).filter((p) => p.access_mode === "rw");
  if (writable.length === 0) {
    return section("device.set_properties", h("p", { class: "muted" }, t("device.no_writable")));
  }
  const form = paramsForm(
    writable,
    "device.set",
    (values) =>
      Object.keys(values).length === 0
        ? Promise.resolve(h("span", {}, t("form.nothing")))
        : send(`/devices/${deviceId}/properties/set`, values, onDone),
    { id: "set-properties" },
  );
  return section("device.set_properties", form);
}

export function servicesSection(deviceId, model, onDone) {
  const services = model.services || [];
  if (services.length === 0) {
    return section("device.services", h("p", { class: "muted" }, t("device.no_services")));
  }
  return section(
    "device.services",
    services.map((s) =>
      h(
        "div",
        { class: "service", dataset: { service: s.identifier } },
        h("h3", {}, `${s.name} · ${s.identifier} `, badge(t(`service.${s.call_type}`))),
        paramsForm(s.input_data || [], "device.call", (values) => send(`/devices/${deviceId}/services/${s.identifier}`, values, onDone), {
          id: `service-${s.identifier}`,
        }),
      ),
    ),
  );
}

export async function commandsTable(deviceId) {
  const page = await api.get(`/devices/${deviceId}/commands`, { limit: 20 }).catch(() => ({ items: [] }));
  return table(
    [
      { key: "command.created_at", cell: (c) => fmtTime(c.created_at) },
      { key: "command.kind", cell: (c) => (c.kind === "property_set" ? t("device.set_properties") : c.identifier) },
      { key: "command.params", cell: (c) => fmtValue(c.params) },
      { key: "command.status", cell: (c) => t(`command.status.${c.status}`) },
      { key: "command.code", cell: (c) => fmtValue(c.code) },
      { key: "command.output", cell: (c) => fmtValue(c.output) },
    ],
    page.items,
    { id: "command-history" },
  );
}

export async function messageLogTable(deviceId) {
  const log = await api.get(`/devices/${deviceId}/message-log`).catch(() => ({ entries: [] }));
  return table(
    [
      { key: "log.ts", cell: (e) => fmtTime(e.ts) },
      { key: "log.topic", cell: (e) => e.topic },
      { key: "log.outcome", cell: (e) => e.outcome },
      { key: "log.code", cell: (e) => fmtValue(e.code) },
      { key: "log.reason", cell: (e) => e.reason || "—" },
      { key: "log.size", cell: (e) => e.size },
    ],
    [...log.entries].reverse().slice(0, 50),
    { id: "message-log" },
  );
}

export async function eventsTable(deviceId) {
  const answer = await api.get(`/devices/${deviceId}/events`, { limit: 20 }).catch(() => ({ events: [] }));
  return table(
    [
      { key: "log.ts", cell: (e) => fmtTime(e.ts) },
      { key: "event.identifier", cell: (e) => e.identifier },
      { key: "event.type", cell: (e) => e.type },
      { key: "event.output", cell: (e) => fmtValue(e.output) },
    ],
    answer.events,
    { id: "events" },
  );
}
