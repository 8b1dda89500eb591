// The console's entry point: language, session, header and hash routes.
import { setToken } from "./api.js";
import { disposeCharts, loadCharts } from "./charts.js";
import { errorBox, h } from "./dom.js";
import { loadLang, storedLang, switchLang, t, translate } from "./i18n.js";
import { stopLive } from "./live.js";
import { alarmsPage } from "./pages/alarms.js";
import { devicePage } from "./pages/device.js";
import { enterprisePage } from "./pages/enterprise.js";
import { loginPage } from "./pages/login.js";
import { overviewPage } from "./pages/overview.js";
import { platformPage } from "./pages/platform.js";
import { rulesPage } from "./pages/rules.js";
import { forget, homeRoute, whoAmI } from "./session.js";

const ROUTES = [
  [/^\/login$/, () => loginPage()],
  [/^\/overview$/, () => overviewPage()],
  [/^\/platforms\/(\d+)$/, (m) => platformPage(Number(m[1]))],
  [/^\/enterprises\/(\d+)$/, (m) => enterprisePage(Number(m[1]))],
  [/^\/devices\/(\d+)$/, (m) => devicePage(Number(m[1]))],
  [/^\/alarms$/, () => alarmsPage()],
  [/^\/rules$/, () => rulesPage()],
];

// Page timings and the page shown, for the browser tests.
window.qiantang = { timings: {}, readyAt: {}, ready: "" };

let generation = 0;

function showHeader(me) {
  const bar = document.getElementById("topbar");
  bar.hidden = !me;
  document.getElementById("whoami").textContent = me ? me.username : "";
  translate(bar);
}

async function render() {
  const mine = ++generation;
  disposeCharts();
  stopLive();
  window.qiantang.ready = "";
  const path = location.hash.replace(/^#/, "") || "/";
  const main = document.getElementById("main");
  let me = null;
  try {
    me = await whoAmI();
  } catch {
    setToken(null);
  }
  showHeader(me);
  if (!me && path !== "/login") {
    location.hash = "#/login";
    return;
  }
  if (path === "/") {
    location.hash = `#${homeRoute(me)}`;
    return;
  }
  const route = ROUTES.find(([re]) => re.test(path));
  const started = performance.now();
  let page;
  try {
    page = route ? await route[1](path.match(route[0])) : errorBox({ status: 404 });
  } catch (err) {
    page = errorBox(err);
  }
  if (mine !== generation) {
    return; // the user moved on while this page loaded
  }
  main.replaceChildren(page);
  if (page.mounted) {
    await page.mounted();
  }
  const name = route ? path.split("/")[1] : "missing";
  window.qiantang.timings[name] = performance.now() - started;
  window.qiantang.readyAt[name] = performance.now();
  window.qiantang.ready = name;
  document.title = `${t("app.title")} · ${t(`nav.${name}`)}`;
}

async function start() {
  loadCharts().catch(() => {}); // parsed while the first requests are out
  const me = whoAmI().catch(() => null); // in parallel with the catalogue
  await loadLang(storedLang());
  await me;
  translate();
  document.getElementById("lang-switch").addEventListener("click", async () => {
    await switchLang();
    translate();
    await render();
  });
  document.getElementById("logout").addEventListener("click", () => {
    setToken(null);
    forget();
    location.hash = "#/login";
  });
  window.addEventListener("qiantang:signed-out", () => {
    forget();
  });
  window.addEventListener("hashchange", render);
  await render();
}

start().catch((err) => document.getElementById("main").replaceChildren(h("pre", {}, String(err))));
