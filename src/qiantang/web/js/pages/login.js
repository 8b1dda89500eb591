// Sign in: POST /auth/login, the token kept in sessionStorage.
import { api, setToken } from "../api.js";
import { h } from "../dom.js";
import { t } from "../i18n.js";
import { forget } from "../session.js";

export async function loginPage() {
  const message = h("p", { class: "error", id: "login-error", hidden: true });
  const username = h("input", { id: "username", name: "username", autocomplete: "username", required: true });
  const password = h("input", {
    id: "password",
    name: "password",
    type: "password",
    autocomplete: "current-password",
    required: true,
  });
  const form = h(
    "form",
    { id: "login-form", class: "card login" },
    h("h1", {}, t("app.brand")),
    h("p", { class: "muted" }, t("login.subtitle")),
    h("label", {}, t("login.username"), username),
    h("label", {}, t("login.password"), password),
    h("button", { type: "submit", id: "login-submit" }, t("login.submit")),
    message,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    message.hidden = true;
    try {
      const answer = await api.post("/auth/login", {
        username: username.value.trim(),
        password: password.value,
      });
      setToken(answer.token);
      forget();
      location.hash = "#/";
    } catch (err) {
      message.textContent = err.status === 401 ? t("login.failed") : `${t("error.failed")}: ${err.message}`;
      message.hidden = false;
    }
  });
  const page = h("div", { class: "login-page" }, form);
  page.mounted = () => username.focus();
  return page;
}
