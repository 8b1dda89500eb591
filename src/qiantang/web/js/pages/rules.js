// Rules: list, create from a template, enable/disable, dry run.
import { h, section } from "../dom.js";
import { t } from "../i18n.js";

export async function rulesPage() {
  return h("div", { class: "page rules", id: "rules-page" }, h("h1", {}, t("rule.title")), section("rule.list", h("p", { class: "muted" }, t("rule.unavailable"))));
}
