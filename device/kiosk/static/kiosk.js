// The kiosk screen. It shows what the device's dossier session says (polled from /api/state) and
// sends the citizen's touches back. Nothing personal is ever stored in the browser.
"use strict";

const TEXT = {
  vi: {
    title: "Số hóa hồ sơ", switch_language: "English",
    start_title: "Xin chào", start_text: "Chạm vào nút bên dưới để bắt đầu số hóa giấy tờ của bạn.",
    start_button: "Bắt đầu", start_result: "Số hóa kết quả giải quyết",
    privacy: "Ảnh giấy tờ của bạn chỉ dùng để số hóa hồ sơ này. Máy chỉ giữ ảnh cho đến khi đã gửi về cơ quan, rồi xóa.",
    kind_result: "Đang số hóa: kết quả giải quyết hồ sơ",
    closed_result: "Kết quả của hồ sơ {code} đã được lưu với {n} trang. Cảm ơn bạn.",
    code_title: "Mã hồ sơ", code_text: "Đưa mã QR trên giấy hẹn vào trước máy ảnh, hoặc nhập mã hồ sơ.",
    code_label: "Nhập mã hồ sơ", continue: "Tiếp tục", no_code: "Tôi không có mã", back: "Quay lại",
    place_title: "Đặt giấy tờ vào khung", retake_title: "Chụp lại trang {n}",
    review_button: "Xem lại", cancel: "Hủy hồ sơ",
    capturing_title: "Đang chụp, vui lòng giữ yên…", scanning_title: "Đang quét giấy tờ…",
    scan_button: "Quét bằng máy quét", feeder_title: "Đặt giấy tờ vào khay máy quét rồi chạm Quét",
    review_title: "Kiểm tra các trang", add_page: "Thêm trang", finish: "Hoàn tất",
    closing_title: "Đang lưu hồ sơ…",
    closed_title: "Hoàn tất", done: "Xong",
    closed_text: "Hồ sơ {code} đã được lưu với {n} trang. Cảm ơn bạn.",
    closed_text_nocode: "Hồ sơ đã được lưu với {n} trang. Cán bộ sẽ ghi mã hồ sơ. Cảm ơn bạn.",
    count: "Đã chụp: {n} trang", page: "Trang {n}", ok: "Ảnh đạt yêu cầu", retake: "Chụp lại", remove: "Xóa",
    unknown_type: "Chưa rõ loại giấy tờ", camera_absent: "Máy ảnh chưa sẵn sàng, vui lòng gọi cán bộ",
    preview_alt: "Hình ảnh từ máy ảnh",
    change_type: "Đổi loại", change_type_of: "Đổi loại giấy tờ của trang {n}",
    type_title: "Trang {n} là loại giấy tờ nào?", type_corrected: "(bạn đã chọn)",
    staff_button: "Cán bộ đăng nhập", signin_title: "Cán bộ đăng nhập",
    signin_text: "Đưa mã QR trên thẻ cán bộ vào trước máy ảnh, hoặc nhập mã cán bộ và mã PIN.",
    signin_text_nocamera: "Nhập mã cán bộ và mã PIN.",
    operator_label: "Mã cán bộ", operator_hint: "Mã cán bộ do quản trị viên cấp, dạng op- và 10 ký tự.",
    pin_label: "Mã PIN", signin_button: "Đăng nhập", signout: "Đăng xuất",
    signed_in: "Cán bộ {id} đang làm việc", kind_unit_staff: "cán bộ đơn vị", kind_postal_staff: "nhân viên bưu điện",
  },
  en: {
    title: "Digitize your dossier", switch_language: "Tiếng Việt",
    start_title: "Welcome", start_text: "Touch the button below to start digitizing your papers.",
    start_button: "Start", start_result: "Digitize a result",
    privacy: "The pictures of your papers are used only to digitize this dossier. This machine keeps them only until the agency has them, then deletes them.",
    kind_result: "Digitizing: the procedure's result",
    closed_result: "The result of dossier {code} was saved with {n} pages. Thank you.",
    code_title: "Dossier code", code_text: "Hold the QR code on your appointment slip to the camera, or type the dossier code.",
    code_label: "Type the dossier code", continue: "Continue", no_code: "I have no code", back: "Back",
    place_title: "Place the document inside the frame", retake_title: "Retake page {n}",
    review_button: "Review", cancel: "Cancel the dossier",
    capturing_title: "Taking the picture, hold still…", scanning_title: "Scanning your papers…",
    scan_button: "Scan with the scanner", feeder_title: "Put your papers in the scanner's tray, then touch Scan",
    review_title: "Check the pages", add_page: "Add pages", finish: "Finish",
    closing_title: "Saving the dossier…",
    closed_title: "Done", done: "Done",
    closed_text: "Dossier {code} was saved with {n} pages. Thank you.",
    closed_text_nocode: "Your dossier was saved with {n} pages. Staff will add its code. Thank you.",
    count: "Pages taken: {n}", page: "Page {n}", ok: "The photo is good", retake: "Retake", remove: "Remove",
    unknown_type: "Document type not known yet", camera_absent: "The camera is not ready, please ask staff",
    preview_alt: "Camera picture",
    change_type: "Change type", change_type_of: "Change the document type of page {n}",
    type_title: "What kind of paper is page {n}?", type_corrected: "(your choice)",
    staff_button: "Staff sign-in", signin_title: "Staff sign-in",
    signin_text: "Hold the QR code of your staff card to the camera, or type your operator id and PIN.",
    signin_text_nocamera: "Type your operator id and PIN.",
    operator_label: "Operator id", operator_hint: "The operator id the administrator gave you: op- and 10 characters.",
    pin_label: "PIN", signin_button: "Sign in", signout: "Sign out",
    signed_in: "Operator {id} at work", kind_unit_staff: "unit staff", kind_postal_staff: "postal staff",
  },
};

let lang = null;
let defaultLang = "vi";
let idleResetMs = 60000;
let lastTouch = Date.now();
let lastTouchSent = 0;
let lastState = null;
let lastScreen = null;
let previewSeq = -1;
let pagesKey = "";
let busy = false;
let refocusType = null;  // the page whose "change type" button gets the focus back after a choice

function t(key, vars) {
  let s = (TEXT[lang] || TEXT.vi)[key] || key;
  for (const [k, v] of Object.entries(vars || {})) s = s.replace("{" + k + "}", String(v));
  return s;
}

function applyLanguage() {
  document.documentElement.lang = lang;
  document.title = t("title");
  for (const el of document.querySelectorAll("[data-t]")) el.textContent = t(el.dataset.t);
  const toggle = document.getElementById("lang");
  toggle.lang = lang === "vi" ? "en" : "vi";
  for (const img of document.querySelectorAll("[data-preview-img]")) img.alt = t("preview_alt");
  pagesKey = "";
  if (lastState) render(lastState);
}

async function post(action, body) {
  if (busy) return;
  busy = true;
  try {
    const res = await fetch("/api/" + action, {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body || {}),
      cache: "no-store",
    });
    const data = await res.json();
    if (res.ok) render(data);
    else if (data.error !== "locked") showNotice(data);  // the sign-in screen's panel says the lock
    else showNotice(null);
  } catch (e) {
    // the app is on this machine: a failed request is retried by the next poll
  } finally {
    busy = false;
  }
}

function showNotice(n) {
  const el = document.getElementById("notice");
  el.textContent = n && (lang === "en" ? n.en : n.vi) ? (lang === "en" ? n.en : n.vi) : "";
}

function screenFor(s) {
  if (s.state === "open") return "place";
  if (s.state === "capturing" || s.state === "review" || s.state === "closing" || s.state === "closed") return s.state;
  if (s.step === "signin") return "signin";
  return s.step === "code" ? "code" : "start";
}

function show(name) {
  for (const sec of document.querySelectorAll("[data-screen]")) sec.hidden = sec.dataset.screen !== name;
}

function clearPersonal() {
  // Privacy: nothing of the last person stays on the screen or in the browser.
  document.getElementById("code").value = "";
  document.getElementById("operator-id").value = "";
  document.getElementById("pin").value = "";
  document.getElementById("pages").replaceChildren();
  document.getElementById("closed-text").textContent = "";
  document.getElementById("notice").textContent = "";
  closeTypePicker();
  for (const img of document.querySelectorAll("[data-preview-img]")) img.removeAttribute("src");
  pagesKey = "";
  try { sessionStorage.clear(); localStorage.clear(); } catch (e) { /* storage disabled */ }
}

function closeTypePicker() {
  const dialog = document.getElementById("type-dialog");
  if (dialog.open) dialog.close();
  document.getElementById("type-options").replaceChildren();
}

function openTypePicker(s, p, opener) {
  // One big button per class, the page's current type pressed; Escape or "back" closes it.
  const dialog = document.getElementById("type-dialog");
  document.getElementById("h-type").textContent = t("type_title", { n: p.sequence });
  const options = document.getElementById("type-options");
  options.replaceChildren();
  for (const d of s.doctypes) {
    const b = document.createElement("button");
    b.type = "button";
    b.className = d.id === p.doctype ? "primary" : "secondary";
    b.setAttribute("aria-pressed", String(d.id === p.doctype));
    b.textContent = lang === "en" ? d.en : d.vi;
    b.addEventListener("click", () => {
      refocusType = p.id;
      closeTypePicker();
      if (d.id !== p.doctype) post("doctype", { page_id: p.id, doctype: d.id });
      else opener.focus();
    });
    options.append(b);
  }
  dialog.showModal();
  const pressed = options.querySelector("[aria-pressed=true]") || options.querySelector("button");
  if (pressed) pressed.focus();
}

function renderPages(s) {
  const key = JSON.stringify(s.pages) + lang + Boolean(s.camera);
  if (key === pagesKey) return;
  pagesKey = key;
  const list = document.getElementById("pages");
  list.replaceChildren();
  for (const p of s.pages) {
    const li = document.createElement("li");
    li.className = p.ok ? "good" : "bad";
    const img = document.createElement("img");
    img.src = "/api/page/" + encodeURIComponent(p.id) + ".jpg";
    img.alt = t("page", { n: p.sequence });
    const title = document.createElement("h3");
    title.textContent = t("page", { n: p.sequence });
    const type = document.createElement("p");
    type.className = "type";
    type.textContent = ((lang === "en" ? p.doctype_en : p.doctype_vi) || t("unknown_type"))
      + (p.doctype_corrected ? " " + t("type_corrected") : "");
    const change = document.createElement("button");
    change.type = "button";
    change.className = "secondary";
    change.dataset.changeType = p.id;
    change.textContent = t("change_type");
    change.setAttribute("aria-label", t("change_type_of", { n: p.sequence }));
    change.setAttribute("aria-haspopup", "dialog");
    change.addEventListener("click", () => openTypePicker(lastState, p, change));
    const verdict = document.createElement("p");
    verdict.className = "verdict " + (p.ok ? "ok" : "bad");
    const msgs = lang === "en" ? p.messages_en : p.messages_vi;
    verdict.textContent = p.ok ? "✓ " + t("ok") : "✗ " + (msgs[0] || "");  // the first issue: one thing to do
    const retake = document.createElement("button");
    retake.type = "button";
    retake.className = p.ok ? "secondary" : "primary";
    retake.textContent = t("retake");
    retake.setAttribute("aria-label", t("retake") + " " + t("page", { n: p.sequence }));
    retake.addEventListener("click", () => post("retake", { page_id: p.id }));
    const remove = document.createElement("button");
    remove.type = "button";
    remove.className = "danger";
    remove.textContent = t("remove");
    remove.setAttribute("aria-label", t("remove") + " " + t("page", { n: p.sequence }));
    remove.addEventListener("click", () => post("remove", { page_id: p.id }));
    li.append(title, img, type);
    if (s.doctypes && s.doctypes.length) li.append(change);
    li.append(verdict);
    if (s.camera) li.append(retake);  // a scanner page is removed and scanned again instead
    li.append(remove);
    list.append(li);
  }
  if (refocusType) {
    const again = list.querySelector('[data-change-type="' + CSS.escape(refocusType) + '"]');
    refocusType = null;
    if (again) again.focus();
  }
}

function renderPreview(s, screen) {
  if (screen !== "place" && screen !== "code" && screen !== "signin") return;
  if (s.preview_seq && s.preview_seq !== previewSeq) {
    previewSeq = s.preview_seq;
    for (const img of document.querySelectorAll("section:not([hidden]) [data-preview-img]")) {
      img.src = "/api/preview.jpg?n=" + previewSeq;
    }
  }
  const g = s.guidance;
  const outline = document.getElementById("outline");
  outline.setAttribute("points", g && g.quad ? g.quad.map((p) => p[0] + "," + p[1]).join(" ") : "");
  outline.setAttribute("class", g && g.ready ? "" : "wait");
  if (screen === "place") {
    const hint = document.getElementById("hint");
    const text = g ? (lang === "en" ? g.hint_en : g.hint_vi) : "";
    if (hint.textContent !== text) hint.textContent = text;
  }
}

function renderStaff(s, screen) {
  // Who is signed in (an operator id and kind, never a name), the way in, and the lock.
  const staff = s.staff;
  const who = staff && staff.operator;
  document.getElementById("staff-bar").hidden = !who;
  document.getElementById("staff-who").textContent = who
    ? t("signed_in", { id: who.id }) + " (" + t("kind_" + who.kind) + ")" : "";
  // on every screen: pressed while a dossier is open, the screen says how to hand over
  document.getElementById("staff-button").hidden = !(staff && staff.available && !who) || screen === "signin";
  if (screen !== "signin") return;
  const lock = staff && staff.lock_notice ? (lang === "en" ? staff.lock_notice.en : staff.lock_notice.vi) : "";
  const lockEl = document.getElementById("lock-text");
  if (lockEl.textContent !== lock) lockEl.textContent = lock;
  lockEl.hidden = !lock;
  document.getElementById("signin-submit").disabled = Boolean(lock);
  document.getElementById("card-preview").hidden = !s.camera;
  document.getElementById("signin-text").textContent = s.camera ? t("signin_text") : t("signin_text_nocamera");
}

function render(s) {
  lastState = s;
  if (lang === null) { lang = s.language; defaultLang = s.language; applyLanguage(); }
  idleResetMs = s.idle_reset_s * 1000;
  const screen = screenFor(s);
  if (screen === "start" && lastScreen !== "start") clearPersonal();
  lastScreen = screen;
  show(screen);
  document.body.dataset.screen = screen;
  const alert = document.getElementById("alert");
  let alertText = "";
  if (s.device_problem) alertText = lang === "en" ? s.device_problem.en : s.device_problem.vi;
  else if (s.camera && s.camera.state === "absent") alertText = t("camera_absent");
  else if (s.fault) alertText = lang === "en" ? s.fault.en : s.fault.vi;
  alert.textContent = alertText;
  alert.hidden = !alertText;
  showNotice(s.notice);
  for (const el of document.querySelectorAll("[data-kind-line]")) el.hidden = s.kind !== "result";
  if (screen === "place") {
    const retaking = s.retake && s.pages.find((p) => p.id === s.retake);
    document.getElementById("h-place").textContent = retaking
      ? t("retake_title", { n: retaking.sequence }) : (s.camera ? t("place_title") : t("feeder_title"));
    document.getElementById("place-preview").hidden = !s.camera;
    document.getElementById("hint").hidden = !s.camera;
    document.getElementById("scan").hidden = !s.scanner;
    document.getElementById("count").textContent = s.pages.length ? t("count", { n: s.pages.length }) : "";
    document.getElementById("to-review").hidden = !s.pages.length;
  }
  if (screen === "capturing") {
    document.getElementById("h-capturing").textContent =
      s.capturing === "scanner" ? t("scanning_title") : t("capturing_title");
  }
  renderStaff(s, screen);
  if (screen === "review") renderPages(s);
  else closeTypePicker();
  if (screen === "closed" && s.last_closed) {
    const c = s.last_closed;
    const text = c.kind === "result" ? "closed_result" : "closed_text";
    document.getElementById("closed-text").textContent = c.dossier_code
      ? t(text, { code: c.dossier_code, n: c.pages }) : t("closed_text_nocode", { n: c.pages });
  }
  renderPreview(s, screen);
}

async function poll() {
  try {
    const res = await fetch("/api/state", { cache: "no-store" });
    if (res.ok) render(await res.json());
  } catch (e) {
    // keep polling
  }
  const screen = lastState ? screenFor(lastState) : "start";
  if (Date.now() - lastTouch > idleResetMs && (screen === "code" || screen === "closed" || screen === "signin")) {
    lastTouch = Date.now();
    if (lang !== defaultLang) { lang = defaultLang; applyLanguage(); }
    clearPersonal();
    post("home");
  }
  setTimeout(poll, screen === "place" || screen === "code" || screen === "signin" ? 200 : 400);
}

function touched() {
  lastTouch = Date.now();
  if (lastTouch - lastTouchSent > 5000) {
    lastTouchSent = lastTouch;
    fetch("/api/touch", { method: "POST", cache: "no-store" }).catch(() => {});
  }
}

document.addEventListener("DOMContentLoaded", () => {
  document.addEventListener("pointerdown", touched, true);
  document.addEventListener("keydown", touched, true);
  document.getElementById("lang").addEventListener("click", () => {
    lang = lang === "vi" ? "en" : "vi";
    applyLanguage();
  });
  for (const b of document.querySelectorAll("[data-action]")) {
    b.addEventListener("click", () => {
      post(b.dataset.action, b.dataset.kind ? { kind: b.dataset.kind } : undefined);
    });
  }
  document.getElementById("type-cancel").addEventListener("click", closeTypePicker);
  document.getElementById("code-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const code = document.getElementById("code").value.trim();
    if (code) post("open", { code: code });
  });
  document.getElementById("signin-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const pin = document.getElementById("pin");
    const body = { operator_id: document.getElementById("operator-id").value.trim(), pin: pin.value };
    pin.value = "";  // the PIN leaves the screen at once, right or wrong
    post("signin", body);
  });
  poll();
});
