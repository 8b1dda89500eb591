// ECharts (vendored, global `echarts`): loaded beside the page's first API requests, not
// before them; every chart made here is disposed on navigation.
import { currentLang, t } from "./i18n.js";

const ECHARTS = "/static/vendor/echarts.common.min.js";
const live = new Set();
let loading = null;

// The ECharts script, added once (index.html preloads it); resolves when it has run.
export function loadCharts() {
  if (!loading) {
    loading = new Promise((resolve, reject) => {
      if (window.echarts) {
        resolve(window.echarts);
        return;
      }
      const script = document.createElement("script");
      script.src = ECHARTS;
      script.onload = () => resolve(window.echarts);
      script.onerror = () => reject(new Error(`${ECHARTS} did not load`));
      document.head.append(script);
    });
  }
  return loading;
}

export function disposeCharts() {
  for (const chart of live) {
    chart.dispose();
  }
  live.clear();
}

window.addEventListener("resize", () => {
  for (const chart of live) {
    chart.resize();
  }
});

async function make(el, option, onDrawn) {
  const echarts = await loadCharts();
  const locale = currentLang() === "en" ? "EN" : "ZH";
  const chart = echarts.init(el, null, { renderer: "canvas", locale });
  live.add(chart);
  if (onDrawn) {
    chart.on("finished", () => onDrawn(chart));
  }
  chart.setOption(option);
  return chart;
}

// Grouped bars: categories on x, one series per {nameKey, values}.
export function barChart(el, categories, series, onDrawn) {
  return make(
    el,
    {
      animation: false,
      tooltip: { trigger: "axis" },
      legend: { top: 0 },
      grid: { left: 48, right: 16, top: 32, bottom: 48 },
      xAxis: { type: "category", data: categories, axisLabel: { interval: 0, rotate: 20 } },
      yAxis: { type: "value", minInterval: 1 },
      series: series.map((s) => ({ name: t(s.nameKey), type: "bar", data: s.values })),
    },
    onDrawn,
  );
}

// A ring of {name, value, color} slices; slices of 0 are left out, and `emptyKey`'s text
// shows when nothing is left.
export function pieChart(el, slices, emptyKey, onDrawn) {
  const shown = slices.filter((s) => s.value > 0).map((s) => ({ ...s, itemStyle: s.color ? { color: s.color } : undefined }));
  const title = shown.length ? undefined : { text: t(emptyKey), left: "center", top: "middle", textStyle: { color: "#6b7785", fontSize: 14 } };
  return make(
    el,
    {
      animation: false,
      title,
      tooltip: { trigger: "item" },
      legend: { bottom: 0 },
      series: [{ type: "pie", radius: ["35%", "65%"], data: shown, label: { formatter: "{b}: {c}" } }],
    },
    onDrawn,
  );
}

// A time line of downsampled buckets over [start, end): avg as the line, min..max as a band.
export function historyChart(el, name, buckets, [start, end], onDrawn) {
  const avg = buckets.map((b) => [b.ts, b.avg ?? b.last]);
  const low = buckets.map((b) => [b.ts, b.min]);
  const spread = buckets.map((b) => [b.ts, b.max !== null && b.min !== null ? b.max - b.min : null]);
  const numeric = buckets.some((b) => typeof b.min === "number");
  const series = [{ name, type: "line", data: avg, showSymbol: buckets.length < 60 }];
  if (numeric) {
    series.push(
      { name: t("chart.min"), type: "line", data: low, stack: "band", lineStyle: { opacity: 0 }, symbol: "none" },
      {
        name: t("chart.range"),
        type: "line",
        data: spread,
        stack: "band",
        lineStyle: { opacity: 0 },
        areaStyle: { opacity: 0.15 },
        symbol: "none",
      },
    );
  }
  return make(
    el,
    {
      animation: false,
      tooltip: { trigger: "axis" },
      grid: { left: 56, right: 16, top: 24, bottom: 56 },
      xAxis: { type: "time", min: start, max: end },
      yAxis: { type: "value", scale: true },
      dataZoom: [{ type: "inside" }, { type: "slider", height: 18, bottom: 8 }],
      series,
    },
    onDrawn,
  );
}
