// The provincial overview: the 1+N tree with indicators per node, and charts.
import { api } from "../api.js";
import { alarmCounts } from "../alarms_api.js";
import { barChart, pieChart } from "../charts.js";
import { badge, errorBox, fmtNumber, h, link, section } from "../dom.js";
import { t } from "../i18n.js";
import { session } from "../session.js";

const FIGURES = ["enterprises", "devices", "devices_online", "points_today"];

// The user's topmost platforms: bound ones with no bound ancestor (the base for others).
function roots(platforms, me) {
  const byId = new Map(platforms.map((p) => [p.id, p]));
  const bound = new Set(me.platform_roles.map((r) => r.platform_id));
  const under = (p) => {
    for (let up = byId.get(p.parent_id); up; up = byId.get(up.parent_id)) {
      if (bound.has(up.id)) {
        return true;
      }
    }
    return false;
  };
  const mine = platforms.filter((p) => bound.has(p.id) && !under(p));
  return mine.length > 0 ? mine : platforms.filter((p) => p.kind === "base");
}

function subtree(root, children) {
  const out = [root];
  for (let i = 0; i < out.length; i++) {
    out.push(...(children.get(out[i].id) || []));
  }
  return out;
}

async function indicatorsOf(nodes) {
  const answers = await Promise.all(
    nodes.map((p) => api.get(`/platforms/${p.id}/indicators`).catch((err) => ({ error: err }))),
  );
  return new Map(nodes.map((p, i) => [p.id, answers[i]]));
}

function figuresLine(figures) {
  if (!figures || figures.error) {
    return h("span", { class: "muted" }, t("error.no_access"));
  }
  return h(
    "span",
    { class: "figures" },
    FIGURES.map((key) =>
      h("span", { class: "figure", dataset: { figure: key } }, `${t(`indicator.${key}`)} `, h("b", {}, fmtNumber(figures[key]))),
    ),
  );
}

function treeNode(platform, children, figures) {
  const kids = children.get(platform.id) || [];
  return h(
    "li",
    { dataset: { platformId: platform.id } },
    h(
      "div",
      { class: "node" },
      badge(t(`kind.${platform.kind}`), `kind-${platform.kind}`),
      link(`#/platforms/${platform.id}`, platform.name, { class: "node-name" }),
      h("span", { class: "muted ident" }, platform.identifier),
      figuresLine(figures.get(platform.id)),
    ),
    kids.length ? h("ul", {}, kids.map((k) => treeNode(k, children, figures))) : null,
  );
}

function tiles(total) {
  const keys = ["platforms", ...FIGURES];
  return h(
    "div",
    { class: "tiles", id: "overview-tiles" },
    keys.map((key) =>
      h(
        "div",
        { class: "tile", dataset: { indicator: key } },
        h("div", { class: "tile-value" }, fmtNumber(key === "platforms" ? total.platforms.total : total[key])),
        h("div", { class: "tile-label" }, t(`indicator.${key}`)),
      ),
    ),
  );
}

export async function overviewPage() {
  const me = session.me;
  const platforms = await api.all("/platforms");
  const children = new Map();
  for (const p of platforms) {
    if (!children.has(p.parent_id)) {
      children.set(p.parent_id, []);
    }
    children.get(p.parent_id).push(p);
  }
  const tops = roots(platforms, me);
  const nodes = tops.flatMap((r) => subtree(r, children));
  const [figures, alarms] = await Promise.all([indicatorsOf(nodes), alarmCounts()]);
  const main = figures.get(tops[0]?.id);
  const page = h("div", { class: "page overview", id: "overview" }, h("h1", {}, t("overview.title")));
  if (main && !main.error) {
    page.append(tiles(main));
  }
  page.append(section("overview.tree", h("ul", { class: "tree", id: "platform-tree" }, tops.map((r) => treeNode(r, children, figures)))));
  const charts = h("div", { class: "grid2" });
  const devicesEl = h("div", { class: "chart", id: "chart-devices" });
  const pointsEl = h("div", { class: "chart", id: "chart-points" });
  const alarmsEl = h("div", { class: "chart", id: "chart-alarms" });
  charts.append(section("overview.chart_devices", devicesEl), section("overview.chart_points", pointsEl));
  if (alarms) {
    charts.append(section("overview.chart_alarms", alarmsEl));
  }
  if (main && !main.error) {
    page.append(charts);
  } else if (main?.error && main.error.status !== 403) {
    page.append(errorBox(main.error));
  }
  page.mounted = () => {
    if (!main || main.error) {
      return;
    }
    const rows = main.children.length ? main.children : [{ name: tops[0].name, ...main }];
    const names = rows.map((c) => c.name);
    barChart(devicesEl, names, [
      { nameKey: "indicator.devices", values: rows.map((c) => c.devices) },
      { nameKey: "indicator.devices_online", values: rows.map((c) => c.devices_online) },
    ]);
    barChart(pointsEl, names, [{ nameKey: "indicator.points_today", values: rows.map((c) => c.points_today) }]);
    if (alarms) {
      pieChart(
        alarmsEl,
        Object.entries(alarms).map(([severity, value]) => ({ name: t(`severity.${severity}`), value })),
      );
    }
  };
  return page;
}
