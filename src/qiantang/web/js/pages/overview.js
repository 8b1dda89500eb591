// The provincial overview: the 1+N tree with indicators per node, and charts.
import { api } from "../api.js";
import { barChart, pieChart } from "../charts.js";
import { badge, errorBox, fmtNumber, h, link, section } from "../dom.js";
import { t } from "../i18n.js";
import { session } from "../session.js";

const FIGURES = ["enterprises", "devices", "devices_online", "points_today", "alarms_open"];
const SEVERITY_COLOURS = { critical: "#c5221f", major: "#f29900", minor: "#fbbc04", warning: "#a0c3ff", info: "#9aa0a6" };

// One figure of an indicators answer (open alarms are counted by severity, with a total).
function figure(figures, key) {
  const value = figures[key];
  return value !== null && typeof value === "object" ? value.total : value;
}

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

// Indicators of every node: one request per node that has sub-platforms (its answer
// carries each direct child's figures too), so leaves cost nothing extra.
// `early`: requests already sent for the caller's own platforms, by id.
async function indicatorsOf(nodes, children, tops, early) {
  const asked = nodes.filter((p) => tops.includes(p) || (children.get(p.id) || []).length > 0);
  const answers = await Promise.all(
    asked.map((p) => early.get(p.id) || api.get(`/platforms/${p.id}/indicators`).catch((err) => ({ error: err }))),
  );
  const figures = new Map();
  asked.forEach((p, i) => {
    figures.set(p.id, answers[i]);
    for (const child of answers[i].children || []) {
      if (!figures.has(child.platform_id)) {
        figures.set(child.platform_id, child);
      }
    }
  });
  return figures;
}

function figuresLine(figures) {
  if (!figures || figures.error) {
    return h("span", { class: "muted" }, t("error.no_access"));
  }
  return h(
    "span",
    { class: "figures" },
    FIGURES.filter((key) => key in figures).map((key) =>
      h("span", { class: "figure", dataset: { figure: key } }, `${t(`indicator.${key}`)} `, h("b", {}, fmtNumber(figure(figures, key)))),
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
  const keys = ["platforms", ...FIGURES.filter((key) => key in total)];
  return h(
    "div",
    { class: "tiles", id: "overview-tiles" },
    keys.map((key) =>
      h(
        "div",
        { class: "tile", dataset: { indicator: key } },
        h("div", { class: "tile-value" }, fmtNumber(figure(total, key))),
        h("div", { class: "tile-label" }, t(`indicator.${key}`)),
      ),
    ),
  );
}

export async function overviewPage() {
  const me = session.me;
  // The caller's own platforms are usually the roots: ask for their figures right away.
  const early = new Map(
    me.platform_roles.slice(0, 8).map((r) => [r.platform_id, api.get(`/platforms/${r.platform_id}/indicators`).catch((err) => ({ error: err }))]),
  );
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
  const figures = await indicatorsOf(nodes, children, tops, early);
  const main = figures.get(tops[0]?.id);
  const alarms = main?.alarms_open || null;
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
  page.mounted = async () => {
    if (!main || main.error) {
      return;
    }
    // Each direct sub-platform's and the root's own enterprises *at home there* (the API's
    // `home` figures): an enterprise belongs to one home, so the bars add up to the total
    // even where enterprises are members of an industry and a region platform at once.
    const home = (c) => ({ ...c, ...(c.home || {}), name: c.name });
    const own = (main.own.home || main.own).enterprises > 0 || main.children.length === 0;
    const rows = [
      ...main.children.map(home),
      ...(own ? [home({ ...main.own, name: t("overview.own", { name: tops[0].name }) })] : []),
    ];
    const names = rows.map((c) => c.name);
    const drawn = [];
    drawn.push(barChart(devicesEl, names, [
      { nameKey: "indicator.devices", values: rows.map((c) => c.devices) },
      { nameKey: "indicator.devices_online", values: rows.map((c) => c.devices_online) },
    ]));
    drawn.push(barChart(pointsEl, names, [{ nameKey: "indicator.points_today", values: rows.map((c) => c.points_today) }]));
    if (alarms) {
      const slices = Object.entries(SEVERITY_COLOURS).map(([severity, color]) => ({
        name: t(`severity.${severity}`),
        value: alarms[severity] || 0,
        color,
      }));
      drawn.push(pieChart(alarmsEl, slices, "overview.no_alarms"));
    }
    await Promise.all(drawn);
  };
  return page;
}
