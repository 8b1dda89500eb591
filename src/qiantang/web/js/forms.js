// Forms generated from the thing model: one input per param, typed by its data type.
import { h } from "./dom.js";
import { t } from "./i18n.js";

const NUMBERS = new Set(["int", "float", "double"]);

function numberInput(param, dt) {
  const specs = dt.specs || {};
  const step = specs.step ?? (dt.type === "int" ? 1 : "any");
  const el = h("input", { type: "number", name: param.identifier, min: specs.min, max: specs.max, step });
  return { el, read: () => (el.value === "" ? undefined : Number(el.value)) };
}

function selectInput(param, options, parse) {
  const el = h(
    "select",
    { name: param.identifier },
    h("option", { value: "" }, t("form.choose")),
    options.map(([value, label]) => h("option", { value: String(value) }, `${label} (${value})`)),
  );
  return { el, read: () => (el.value === "" ? undefined : parse(el.value)) };
}

function structInput(param, dt) {
  const fields = (dt.specs?.fields || []).map((f) => [f.identifier, paramInput(f)]);
  const el = h("fieldset", { class: "struct" }, h("legend", {}, param.name), fields.map(([, f]) => f.label));
  const read = () => {
    const out = {};
    for (const [id, f] of fields) {
      const v = f.read();
      if (v !== undefined) {
        out[id] = v;
      }
    }
    return Object.keys(out).length ? out : undefined;
  };
  return { el, read, bare: true };
}

function jsonInput(param) {
  const el = h("textarea", { name: param.identifier, rows: 2, placeholder: "[ ]" });
  return { el, read: () => (el.value.trim() === "" ? undefined : JSON.parse(el.value)) };
}

function inputFor(param) {
  const dt = param.data_type || { type: "text" };
  if (NUMBERS.has(dt.type)) {
    return numberInput(param, dt);
  }
  if (dt.type === "enum") {
    return selectInput(param, (dt.specs?.members || []).map((m) => [m.value, m.name]), Number);
  }
  if (dt.type === "bool") {
    const s = dt.specs || {};
    return selectInput(param, [[0, s.false ?? "false"], [1, s.true ?? "true"]], (v) => v === "1");
  }
  if (dt.type === "date") {
    const el = h("input", { type: "datetime-local", name: param.identifier });
    return { el, read: () => (el.value === "" ? undefined : new Date(el.value).getTime()) };
  }
  if (dt.type === "struct") {
    return structInput(param, dt);
  }
  if (dt.type === "array") {
    return jsonInput(param);
  }
  const el = h("input", { type: "text", name: param.identifier, maxlength: dt.specs?.length });
  return { el, read: () => (el.value === "" ? undefined : el.value) };
}

function unitOf(dt) {
  const specs = dt?.specs || {};
  return specs.unit ? ` (${specs.unit})` : "";
}

// {label, read}: a labelled input for one param; read() gives its value or undefined.
export function paramInput(param) {
  const input = inputFor(param);
  const label = input.bare
    ? input.el
    : h("label", { class: "param" }, h("span", {}, `${param.name} · ${param.identifier}${unitOf(param.data_type)}`), input.el);
  return { label, read: input.read };
}

// A form over `params`; onSubmit(values) runs with the filled-in values only.
export function paramsForm(params, submitKey, onSubmit, attrs = {}) {
  const inputs = params.map((p) => [p.identifier, paramInput(p)]);
  const result = h("div", { class: "result", role: "status" });
  const button = h("button", { type: "submit" }, t(submitKey));
  const form = h("form", { class: "params", ...attrs }, inputs.map(([, i]) => i.label), button, result);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const values = {};
    try {
      for (const [id, input] of inputs) {
        const v = input.read();
        if (v !== undefined) {
          values[id] = v;
        }
      }
    } catch (err) {
      result.textContent = `${t("form.bad_value")}: ${err.message}`;
      return;
    }
    button.disabled = true;
    result.textContent = t("form.sending");
    try {
      result.replaceChildren(await onSubmit(values));
    } finally {
      button.disabled = false;
    }
  });
  return form;
}
