// A platform: where it sits, its sub-platforms, member enterprises and templates.
import { api } from "../api.js";
import { badge, fmtNumber, fmtTime, h, link, section, table } from "../dom.js";
import { t } from "../i18n.js";

async function ancestors(platform) {
  const chain = [];
  let parentId = platform.parent_id;
  while (parentId !== null && parentId !== undefined && chain.length < 20) {
    const parent = await api.get(`/platforms/${parentId}`);
    chain.unshift(parent);
    parentId = parent.parent_id;
  }
  return chain;
}

function crumbs(chain, platform) {
  return h(
    "nav",
    { class: "crumbs" },
    link("#/overview", t("nav.overview")),
    chain.map((p) => [" / ", link(`#/platforms/${p.id}`, p.name)]),
    " / ",
    h("span", {}, platform.name),
  );
}

function indicatorList(ind) {
  if (!ind) {
    return h("p", { class: "muted" }, t("platform.no_indicators"));
  }
  const keys = ["enterprises", "products", "devices", "devices_online", "points_today"];
  return h(
    "dl",
    { class: "facts", id: "platform-indicators" },
    keys.map((k) => [h("dt", {}, t(`indicator.${k}`)), h("dd", { dataset: { indicator: k } }, fmtNumber(ind[k]))]),
  );
}

export async function platformPage(id) {
  const platform = await api.get(`/platforms/${id}`);
  const [chain, subs, enterprises, templates, ind] = await Promise.all([
    ancestors(platform),
    api.all("/platforms", { parent_id: id }),
    api.all("/enterprises", { platform_id: id }).catch(() => []),
    api.all("/templates", { platform_id: id }).catch(() => []),
    api.get(`/platforms/${id}/indicators`).catch(() => null),
  ]);
  return h(
    "div",
    { class: "page platform", id: "platform-page", dataset: { platformId: id } },
    crumbs(chain, platform),
    h("h1", {}, platform.name, " ", badge(t(`kind.${platform.kind}`), `kind-${platform.kind}`)),
    h(
      "dl",
      { class: "facts" },
      h("dt", {}, t("common.identifier")),
      h("dd", {}, platform.identifier),
      h("dt", {}, t("common.description")),
      h("dd", {}, platform.description || "—"),
      h("dt", {}, t("common.created_at")),
      h("dd", {}, fmtTime(platform.created_at)),
    ),
    section("platform.indicators", indicatorList(ind)),
    section(
      "platform.sub_platforms",
      table(
        [
          { key: "common.name", cell: (p) => link(`#/platforms/${p.id}`, p.name) },
          { key: "common.kind", cell: (p) => t(`kind.${p.kind}`) },
          { key: "common.identifier", cell: (p) => p.identifier },
        ],
        subs,
        { id: "sub-platforms" },
      ),
    ),
    section(
      "platform.enterprises",
      table(
        [
          { key: "common.name", cell: (e) => link(`#/enterprises/${e.id}`, e.name) },
          { key: "enterprise.credit_code", cell: (e) => e.credit_code },
          { key: "enterprise.region", cell: (e) => e.region_code },
          {
            key: "enterprise.relation",
            cell: (e) => (e.home_platform_id === id ? t("enterprise.home") : t("enterprise.member")),
          },
        ],
        enterprises,
        { id: "member-enterprises" },
      ),
    ),
    section(
      "platform.templates",
      table(
        [
          { key: "common.name", cell: (tp) => tp.name },
          { key: "template.category", cell: (tp) => tp.category || "—" },
          { key: "template.properties", cell: (tp) => (tp.thing_model.properties || []).length },
          { key: "template.services", cell: (tp) => (tp.thing_model.services || []).length },
          { key: "common.description", cell: (tp) => tp.description || "—" },
        ],
        templates,
        { id: "templates" },
      ),
    ),
  );
}
