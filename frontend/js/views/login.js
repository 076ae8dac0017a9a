// Login: paste the token printed by `tscnc up` (or open its URL, which carries ?token=).

import { h, mount } from "../dom.js";

export function render(root, { message, onToken }) {
  const input = h("input", { type: "password", id: "token", name: "token", autocomplete: "current-password",
    placeholder: "paste your API token", required: true, size: 50 });
  const formEl = h("form", { class: "card login", id: "login-form", onsubmit: (e) => {
    e.preventDefault();
    const t = input.value.trim();
    if (t) onToken(t);
  } },
  h("h2", {}, "Log in to TSCNC"),
  message && h("p", { class: "notice", id: "login-message" }, message),
  h("p", { class: "muted" }, "Use the login URL printed by ", h("code", {}, "tscnc up"),
    " (it carries the token), or paste a token an admin created for you. It is kept in this browser until you log out."),
  h("label", { for: "token" }, "Token"), input,
  h("div", { class: "actions" }, h("button", { class: "btn primary", type: "submit" }, "Log in")));
  mount(root, formEl);
  input.focus();
  return () => {};
}
