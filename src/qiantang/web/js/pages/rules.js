// Rules of an enterprise: list, create from a platform's template, enable/disable, dry run.
import { api } from "../api.js";
import { badge, errorText, fmtTime, fmtValue, h, section, table } from "../dom.js";
import { t } from "../i18n.js";
import { session } from "../session.js";

export function conditionText(c) {
  const parts = [t(`rule.kind.${c.kind}`)];
  if (c.expression) {
    parts.push(c.expression);
  }
  if (c.property) {
    parts.push(`${c.kind === "rate" ? "Δ" : "avg"}(${c.property}) ${c.op} ${c.threshold}`);
  }
  if (c.kind === "count") {
    parts.push(`≥ ${c.threshold}`);
  }
  for (const key of ["for", "window", "per", "timeout"]) {
    if (c[key]) {
      parts.push(`${key} ${c[key]}`);
    }
  }
  if (c.identifier || c.event_type) {
    parts.push(c.identifier || c.event_type);
  }
  return parts.join(" · ");
}

// Templates published at the enterprise's platforms (home, memberships) and their ancestors.
async function templatesFor(enterprise) {
  const [platforms, memberships] = await Promise.all([
    api.all("/platforms"),
    api.all("/memberships", { enterprise_id: enterprise.id }).catch(() => []),
  ]);
  const byId = new Map(platforms.map((p) => [p.id, p]));
  const ids = new Set();
  for (const start of [enterprise.home_platform_id, ...memberships.map((m) => m.platform_id)]) {
    for (let p = byId.get(start); p && !ids.has(p.id); p = byId.get(p.parent_id)) {
      ids.add(p.id);
    }
  }
  const lists = await Promise.all(
    [...ids].map((id) =>
      api.all(`/platforms/${id}/rule-templates`).then(
        (items) => items.map((tp) => ({ ...tp, platform: byId.get(id)?.name || id })),
        () => [],
      ),
    ),
  );
  return lists.flat();
}

function dryRunResult(answer, devices) {
  const summary = t("rule.dry_run_summary", {
    points: answer.points,
    devices: answer.devices,
    moments: answer.moments.length,
  });
  return h(
    "div",
    { id: "dry-run-result", dataset: { moments: answer.moments.length } },
    h("p", {}, summary, answer.truncated ? ` ${t("rule.truncated")}` : ""),
    answer.error ? h("p", { class: "error" }, answer.error) : null,
    table(
      [
        { key: "log.ts", cell: (m) => fmtTime(m.ts) },
        { key: "alarm.device", cell: (m) => devices.get(m.device_id)?.device_name || m.device_id },
        { key: "rule.transition", cell: (m) => t(`rule.transition.${m.transition}`) },
        { key: "rule.values", cell: (m) => fmtValue(m.values) },
      ],
      answer.moments.slice(0, 200),
    ),
  );
}

function ruleTable(ctx) {
  const { rules, products, devices, reload, output } = ctx;
  const toggle = (rule) => {
    const button = h("button", { type: "button", class: "small", dataset: { toggle: rule.id } }, t(rule.enabled ? "rule.disable" : "rule.enable"));
    button.addEventListener("click", async () => {
      button.disabled = true;
      try {
        await api.post(`/enterprises/${rule.enterprise_id}/rules/${rule.id}/${rule.enabled ? "disable" : "enable"}`, {});
        await reload();
      } catch (err) {
        button.replaceWith(h("span", { class: "error" }, errorText(err)));
      }
    });
    return button;
  };
  const dryRun = (rule) => {
    const button = h("button", { type: "button", class: "small", dataset: { dryRun: rule.id } }, t("rule.dry_run"));
    button.addEventListener("click", async () => {
      output.replaceChildren(h("p", { class: "muted" }, t("rule.dry_running")));
      try {
        output.replaceChildren(dryRunResult(await api.post(`/rules/${rule.id}/dry-run`, {}), devices));
      } catch (err) {
        output.replaceChildren(h("p", { class: "error" }, errorText(err)));
      }
    });
    return button;
  };
  return table(
    [
      { key: "common.name", cell: (r) => r.name },
      { key: "device.product", cell: (r) => products.get(r.product_id)?.name || r.product_id },
      { key: "alarm.device", cell: (r) => (r.device_id ? devices.get(r.device_id)?.device_name || r.device_id : t("rule.all_devices")) },
      { key: "rule.condition", cell: (r) => conditionText(r.condition) },
      { key: "alarm.severity", cell: (r) => (r.alarm ? badge(t(`severity.${r.alarm.severity}`), `sev-${r.alarm.severity}`) : "—") },
      {
        key: "rule.state",
        cell: (r) =>
          h("span", { dataset: { ruleState: r.id } }, r.enabled ? badge(t("rule.enabled"), "ok") : badge(t("rule.disabled"), "off"), r.disabled_reason ? ` ${r.disabled_reason}` : ""),
      },
      { key: "common.actions", cell: (r) => h("span", { class: "actions" }, toggle(r), dryRun(r)) },
    ],
    rules,
    { id: "rule-table" },
  );
}

function createForm(enterpriseId, templates, products, devicesByProduct, onCreated) {
  const template = h("select", { id: "rule-template", required: true }, templates.map((tp) => h("option", { value: tp.id }, `${tp.name} · ${tp.platform}`)));
  const product = h("select", { id: "rule-product", required: true }, [...products.values()].map((p) => h("option", { value: p.id }, p.name)));
  const device = h("select", { id: "rule-device" });
  const name = h("input", { id: "rule-name", maxlength: 128 });
  const fillDevices = () =>
    device.replaceChildren(
      h("option", { value: "" }, t("rule.all_devices")),
      (devicesByProduct.get(Number(product.value)) || []).map((d) => h("option", { value: d.id }, d.nickname || d.device_name)),
    );
  product.addEventListener("change", fillDevices);
  fillDevices();
  const result = h("div", { class: "result", role: "status" });
  const form = h(
    "form",
    { id: "rule-create", class: "params" },
    h("label", {}, t("rule.template"), template),
    h("label", {}, t("device.product"), product),
    h("label", {}, t("alarm.device"), device),
    h("label", {}, t("rule.name_optional"), name),
    h("button", { type: "submit" }, t("rule.create")),
    result,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = { template_id: Number(template.value), product_id: Number(product.value) };
    if (device.value) {
      body.device_id = Number(device.value);
    }
    if (name.value.trim()) {
      body.name = name.value.trim();
    }
    try {
      const rule = await api.post(`/enterprises/${enterpriseId}/rules`, body);
      result.textContent = t("rule.created", { name: rule.name });
      await onCreated();
    } catch (err) {
      result.replaceChildren(h("span", { class: "error" }, errorText(err)));
    }
  });
  return templates.length && products.size ? form : h("p", { class: "muted" }, t("rule.no_templates"));
}

async function enterpriseRules(enterpriseId) {
  const enterprise = await api.get(`/enterprises/${enterpriseId}`);
  const [productList, deviceList, templates] = await Promise.all([
    api.all("/products", { enterprise_id: enterpriseId }),
    api.all("/devices", { enterprise_id: enterpriseId }),
    templatesFor(enterprise),
  ]);
  const products = new Map(productList.map((p) => [p.id, p]));
  const devices = new Map(deviceList.map((d) => [d.id, d]));
  const devicesByProduct = new Map();
  for (const d of deviceList) {
    devicesByProduct.set(d.product_id, [...(devicesByProduct.get(d.product_id) || []), d]);
  }
  const holder = h("div", { id: "rules-holder" });
  const output = h("div", { id: "dry-run-holder" });
  const reload = async () => {
    const rules = await api.all(`/enterprises/${enterpriseId}/rules`);
    holder.replaceChildren(ruleTable({ rules, products, devices, reload, output }));
  };
  await reload();
  return h(
    "div",
    {},
    section("rule.list", holder),
    section("rule.dry_run_title", output),
    section("rule.create_title", createForm(enterpriseId, templates, products, devicesByProduct, reload)),
  );
}

export async function rulesPage() {
  const mine = session.me?.enterprise_roles || [];
  const page = h("div", { class: "page rules", id: "rules-page" }, h("h1", {}, t("rule.title")));
  if (mine.length === 0) {
    page.append(section("rule.list", h("p", { class: "muted" }, t("rule.no_enterprise"))));
    return page;
  }
  const names = await Promise.all(mine.map((r) => api.get(`/enterprises/${r.enterprise_id}`).then((e) => e.name, () => r.enterprise_id)));
  const chooser = h("select", { id: "rule-enterprise" }, mine.map((r, i) => h("option", { value: r.enterprise_id }, names[i])));
  const body = h("div", {}, await enterpriseRules(mine[0].enterprise_id));
  chooser.addEventListener("change", async () => body.replaceChildren(await enterpriseRules(Number(chooser.value))));
  page.append(h("div", { class: "controls" }, h("label", {}, t("nav.enterprises"), chooser)), body);
  return page;
}
