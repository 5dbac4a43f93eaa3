// The navigation bar every fleet page shares (one line per page:
// <script src="/static/nav.js" defer></script>): links between the pages, who is signed in
// with their role, and a log-out button. It speaks the page's language (the <html lang> the
// page sets, followed when its own toggle changes it) and carries ?lang=en to the next page.
"use strict";
(() => {
  const PAGES = [["/", "home"], ["/fleet", "fleet"], ["/progress", "progress"], ["/dossiers", "dossiers"],
                 ["/deliveries", "deliveries"], ["/operations", "operations"], ["/admin", "admin"]];
  const T = {
    vi: {nav: "Các trang quản lý", home: "Tổng quan", fleet: "Thiết bị", progress: "Tiến độ số hóa", dossiers: "Hồ sơ",
         deliveries: "Chuyển giao", operations: "Vận hành", admin: "Quản trị", logout: "Đăng xuất", user: "Người dùng",
         province_admin: "Quản trị tỉnh", unit_admin: "Quản trị đơn vị", viewer: "Chỉ xem", unit: "đơn vị"},
    en: {nav: "Fleet pages", home: "Overview", fleet: "Devices", progress: "Digitization progress", dossiers: "Dossiers",
         deliveries: "Deliveries", operations: "Operations", admin: "Administration", logout: "Log out", user: "User",
         province_admin: "Province admin", unit_admin: "Unit admin", viewer: "Viewer", unit: "unit"},
  };
  const CSS = `
    #sohoa-nav { display: flex; flex-wrap: wrap; align-items: center; gap: .4rem 1.2rem; background: #1d2733;
      color: #fff; padding: .45rem 1rem; margin: 0 0 1rem; border-radius: 6px;
      font: .92rem "Noto Sans", "DejaVu Sans", system-ui, sans-serif; }
    #sohoa-nav ul { display: flex; flex-wrap: wrap; gap: .2rem .9rem; list-style: none; margin: 0; padding: 0; }
    #sohoa-nav a { color: #fff; text-decoration: none; padding: .15rem .1rem; border-bottom: 2px solid transparent; }
    #sohoa-nav a:hover, #sohoa-nav a:focus-visible { border-bottom-color: #9fc3f0; }
    #sohoa-nav a[aria-current="page"] { font-weight: bold; border-bottom-color: #fff; }
    #sohoa-nav .who { margin-left: auto; display: flex; align-items: center; gap: .7rem; }
    #sohoa-nav .role { color: #d7dee6; }
    #sohoa-nav button { font: inherit; color: #1d2733; background: #fff; border: 0; border-radius: 4px;
      padding: .15rem .6rem; cursor: pointer; }
    #sohoa-nav :focus-visible { outline: 2px solid #9fc3f0; outline-offset: 2px; }`;

  let me = null;
  const lang = () => (document.documentElement.lang || "vi").toLowerCase().startsWith("en") ? "en" : "vi";
  const t = (k) => T[lang()][k] || k;
  const make = (tag, attrs, text) => {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = text;
    return node;
  };

  const style = make("style", {}, CSS);
  const bar = make("header", {id: "sohoa-nav"});
  const nav = make("nav", {});
  const list = make("ul", {});
  const links = PAGES.map(([path, key]) => {
    const a = make("a", {href: path, "data-nav": key});
    if (location.pathname === path) a.setAttribute("aria-current", "page");
    const li = make("li", {});
    li.append(a);
    list.append(li);
    return [a, path, key];
  });
  nav.append(list);
  const who = make("div", {class: "who"});
  const user = make("span", {id: "sohoa-nav-user"});
  const logout = make("button", {id: "sohoa-logout", type: "button"});
  who.append(user, logout);
  who.hidden = true;
  bar.append(nav, who);

  function label() {
    nav.setAttribute("aria-label", t("nav"));
    for (const [a, path, key] of links) {
      a.textContent = t(key);
      a.href = lang() === "en" ? `${path}?lang=en` : path;
    }
    logout.textContent = t("logout");
    if (me) {
      user.replaceChildren(make("span", {class: "name"}, me.name), " · ",
                           make("span", {class: "role"}, t(me.role) + (me.unit_code ? ` (${t("unit")} ${me.unit_code})` : "")));
      user.dataset.role = me.role;
      user.title = t("user");
    }
  }

  let leaving = false;
  const toLogin = (next) => {
    if (leaving) return;
    leaving = true;
    location.assign(next ? "/login?next=" + encodeURIComponent(location.pathname + location.search) : "/login");
  };
  // A page's refresh answered 401: the session ended (expired, or logged out in another tab).
  // Rather than an error line repeating every few seconds, back to the login, then here.
  const pageFetch = window.fetch.bind(window);
  window.fetch = async (...args) => {
    const response = await pageFetch(...args);
    if (response.status === 401 && new URL(response.url || location.href).origin === location.origin) toLogin(true);
    return response;
  };

  logout.addEventListener("click", async () => {
    logout.disabled = true;
    leaving = true;  // its own 401 (a session already gone) must not add ?next=
    try {
      await pageFetch("/api/v1/auth/logout", {method: "POST", credentials: "same-origin"});
    } finally {
      location.assign("/login");  // the session is over (or was already): sign in again
    }
  });

  function start() {
    document.head.append(style);
    document.body.prepend(bar);
    label();
    // Follow the page's own language toggle (each page sets <html lang> when it changes).
    new MutationObserver(label).observe(document.documentElement, {attributes: true, attributeFilter: ["lang"]});
    pageFetch("/api/v1/auth/me", {credentials: "same-origin"}).then(async (r) => {
      if (r.status === 401) {
        toLogin(true);
        return;
      }
      if (!r.ok) return;
      me = await r.json();
      who.hidden = false;
      label();
      document.body.dataset.navReady = "1";
    }).catch(() => {});
  }
  if (document.body) start(); else document.addEventListener("DOMContentLoaded", start);
})();
