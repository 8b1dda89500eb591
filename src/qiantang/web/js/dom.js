// Building the page: small element helpers, tables, formatting, error display.
import { currentLang, t } from "./i18n.js";

// h("a", {href: "#/x", class: "c", onclick: fn}, "text", child) -> an element.
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) {
      continue;
    }
    if (k.startsWith("on") && typeof v === "function") {
      el.addEventListener(k.slice(2), v);
    } else if (k === "dataset") {
      Object.assign(el.dataset, v);
    } else if (k === "value") {
      el.value = v;
    } else {
      el.setAttribute(k, v === true ? "" : String(v));
    }
  }
  for (const child of children.flat()) {
    if (child !== undefined && child !== null && child !== false) {
      el.append(child instanceof Node ? child : String(child));
    }
  }
  return el;
}

export function section(titleKey, ...children) {
  return h("section", { class: "card" }, h("h2", {}, t(titleKey)), ...children);
}

// columns: [{key: i18n key of the header, cell: row => Node|string}]
export function table(columns, rows, attrs = {}) {
  if (rows.length === 0) {
    return h("p", { class: "muted", ...attrs }, t("common.empty"));
  }
  return h(
    "table",
    attrs,
    h("thead", {}, h("tr", {}, columns.map((c) => h("th", {}, t(c.key))))),
    h("tbody", {}, rows.map((row) => h("tr", {}, columns.map((c) => h("td", {}, c.cell(row)))))),
  );
}

export function link(href, text, attrs = {}) {
  return h("a", { href, ...attrs }, text);
}

export function badge(text, kind = "") {
  return h("span", { class: `badge ${kind}` }, text);
}

export function fmtNumber(n) {
  return n === undefined || n === null ? "—" : Number(n).toLocaleString(currentLang());
}

export function fmtTime(value) {
  if (value === undefined || value === null || value === "") {
    return "—";
  }
  const date = typeof value === "number" ? new Date(value) : new Date(value);
  return date.toLocaleString(currentLang(), { hour12: false });
}

export function fmtValue(value) {
  if (value === undefined || value === null) {
    return "—";
  }
  if (typeof value === "number") {
    return Number.isInteger(value) ? String(value) : value.toFixed(3).replace(/0+$/, "");
  }
  return typeof value === "object" ? JSON.stringify(value) : String(value);
}

// The API's answer shown as the console's words: 404 not found, 403 no access.
export function errorText(err) {
  if (err?.status === 404) {
    return t("error.not_found");
  }
  if (err?.status === 403) {
    return t("error.no_access");
  }
  if (err?.status === 422 && Array.isArray(err.body?.errors)) {
    return err.body.errors.map((e) => `${e.field}: ${e.message}`).join("; ");
  }
  return `${t("error.failed")}: ${err?.message || err}`;
}

export function errorBox(err) {
  const kind = err?.status === 404 ? "not-found" : err?.status === 403 ? "no-access" : "failed";
  return h("div", { class: "error", dataset: { error: kind } }, errorText(err));
}
