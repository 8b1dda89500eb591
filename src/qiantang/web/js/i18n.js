// Message catalogues: every string the console shows comes from i18n/<lang>.json.
const STORAGE_KEY = "qiantang.lang";
export const LANGUAGES = ["zh-CN", "en"];
const DEFAULT_LANG = "zh-CN";
let catalogue = {};
let lang = DEFAULT_LANG;

export function currentLang() {
  return lang;
}

export async function loadLang(wanted) {
  const chosen = LANGUAGES.includes(wanted) ? wanted : DEFAULT_LANG;
  const response = await fetch(`/static/i18n/${chosen}.json`);
  catalogue = await response.json();
  lang = chosen;
  document.documentElement.lang = chosen;
  return chosen;
}

export function storedLang() {
  return localStorage.getItem(STORAGE_KEY) || DEFAULT_LANG;
}

export async function switchLang() {
  const next = lang === "zh-CN" ? "en" : "zh-CN";
  localStorage.setItem(STORAGE_KEY, next);
  await loadLang(next);
}

// t("enterprise.device_count", {n: 3}) -> the catalogue's text with {n} filled in.
export function t(key, vars = {}) {
  const text = catalogue[key];
  if (text === undefined) {
    return key;
  }
  return text.replace(/\{(\w+)\}/g, (_, name) => (name in vars ? String(vars[name]) : `{${name}}`));
}

export function hasKey(key) {
  return key in catalogue;
}

// Fill every element marked data-i18n (text) or data-i18n-placeholder under `root`.
export function translate(root = document) {
  for (const el of root.querySelectorAll("[data-i18n]")) {
    el.textContent = t(el.dataset.i18n);
  }
  for (const el of root.querySelectorAll("[data-i18n-placeholder]")) {
    el.placeholder = t(el.dataset.i18nPlaceholder);
  }
}
