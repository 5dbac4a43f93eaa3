"use strict";
// The admin page's counter operators (?view=operators): add a unit's clerk or postal staff with a
// PIN and/or a staff card, list them per unit, set a new PIN, draw a new card, retire or bring
// back. Every action is a call to /api/v1/operators (which applies the roles, the unit scope and
// the audit, and sends the unit's devices their new list). A card's token and its QR code are
// shown once, when the API answers them; PINs leave their fields as soon as they are sent.
// Loaded before the page's own script; it uses that script's helpers (api, say, t, make, $, field)
// when called.
const OPERATOR_TEXT = {
  vi: {operators: "Cán bộ số hóa", op_h_new: "Thêm cán bộ số hóa", op_h_list: "Cán bộ số hóa theo đơn vị",
       op_kind: "Loại", unit_staff: "Cán bộ đơn vị", postal_staff: "Nhân viên bưu điện",
       op_label: "Nhãn (số hiệu hoặc chữ viết tắt, không ghi số CCCD)", op_label_short: "Nhãn",
       op_pin: "Mã PIN (6–12 chữ số)", op_card: "Cấp thẻ cán bộ (mã QR)", op_id: "Mã cán bộ (nhập ở máy)",
       op_has_pin: "PIN", op_has_card: "Thẻ", op_new_pin: "PIN mới", op_set_pin: "Đặt PIN",
       op_new_card: "Cấp thẻ mới", op_retire: "Ngừng", op_restore: "Cho làm lại",
       op_active: "Đang làm việc", op_retired: "Đã ngừng", op_unit_filter: "Đơn vị (bỏ trống: mọi đơn vị của bạn)",
       op_show: "Xem", op_card_once: "Mã thẻ chỉ hiện MỘT lần: hãy in mã QR này lên thẻ cán bộ ngay bây giờ. "
         + "Thẻ cũ (nếu có) không dùng được nữa.", op_card_token: "Mã thẻ", op_hide: "Đã in thẻ, ẩn mã",
       op_need_secret: "Cán bộ cần mã PIN hoặc thẻ.", op_bad_pin: "Mã PIN gồm 6 đến 12 chữ số.",
       w_pin: "mã PIN mới", w_card: "thẻ mới", w_retired: "đã ngừng", w_active: "làm việc trở lại",
       r_op_created: (label, id) => `Đã thêm cán bộ ${label} (${id}); các máy của đơn vị sẽ nhận danh sách mới.`,
       r_op_saved: (label, what) => `Đã lưu ${label}: ${what}; các máy của đơn vị sẽ nhận danh sách mới.`,
       c_op_card: (label) => `Cấp thẻ mới cho ${label}? Thẻ cũ sẽ không dùng được nữa.`,
       c_op_retire: (label) => `Ngừng cán bộ ${label}? Họ sẽ không đăng nhập được ở máy nào nữa.`},
  en: {operators: "Counter operators", op_h_new: "Add a counter operator", op_h_list: "Counter operators by unit",
       op_kind: "Kind", unit_staff: "Unit staff", postal_staff: "Postal staff",
       op_label: "Label (staff number or initials, no ID number)", op_label_short: "Label",
       op_pin: "PIN (6–12 digits)", op_card: "Make a staff card (QR code)", op_id: "Operator id (typed at the device)",
       op_has_pin: "PIN", op_has_card: "Card", op_new_pin: "New PIN", op_set_pin: "Set PIN",
       op_new_card: "New card", op_retire: "Retire", op_restore: "Bring back",
       op_active: "Active", op_retired: "Retired", op_unit_filter: "Unit (empty: all your units)",
       op_show: "Show", op_card_once: "The card's token is shown ONCE: print this QR code on the staff card now. "
         + "An older card (if any) stops working.", op_card_token: "Card token", op_hide: "Card printed, hide it",
       op_need_secret: "An operator needs a PIN or a card.", op_bad_pin: "A PIN is 6 to 12 digits.",
       w_pin: "new PIN", w_card: "new card", w_retired: "retired", w_active: "back at work",
       r_op_created: (label, id) => `Operator ${label} (${id}) added; the unit's devices get the new list.`,
       r_op_saved: (label, what) => `${label} saved: ${what}; the unit's devices get the new list.`,
       c_op_card: (label) => `Draw a new card for ${label}? The old card stops working.`,
       c_op_retire: (label) => `Retire ${label}? They can no longer sign in at any device.`},
};
const OPERATOR_KINDS = ["unit_staff", "postal_staff"];
const OPERATOR_PIN = /^[0-9]{6,12}$/;
let operatorsWired = false;
let operatorsUnit = "";

function operatorKinds() {
  const kinds = $("#operator-form select[name=kind]");
  const chosen = kinds.value || "unit_staff";
  kinds.replaceChildren(...OPERATOR_KINDS.map((k) => make("option", {value: k}, t(k))));
  kinds.value = chosen;
}

function showCard(row) {
  // The card's token and its QR, answered once: shown until the admin hides them.
  $("#op-card").hidden = false;
  $("#op-card-qr").innerHTML = row.card_qr_svg;  // the server's own SVG, made from the token
  $("#op-card-token").textContent = row.card_token;
  $("#op-card-who").textContent = `${row.label} (${row.id})`;
}

function hideCard() {
  $("#op-card").hidden = true;
  $("#op-card-qr").replaceChildren();
  $("#op-card-token").textContent = "";
  $("#op-card-who").textContent = "";
}

async function loadOperators() {
  if (!operatorsWired) {
    operatorsWired = true;
    $("#operator-form").addEventListener("submit", createOperator);
    $("#operator-filter").addEventListener("submit", (e) => {
      e.preventDefault();
      operatorsUnit = field(e.target, "unit").value.trim();
      loadOperators();
    });
    $("#op-card-hide").addEventListener("click", hideCard);
  }
  operatorKinds();
  const query = operatorsUnit ? `?unit=${encodeURIComponent(operatorsUnit)}` : "";
  const rows = await api("GET", `/api/v1/operators${query}`);
  if (rows === null) return;
  const body = $("#operators tbody");
  if (!rows.length) {
    body.replaceChildren(make("tr", {}, make("td", {colspan: "8"}, t("none"))));
    return;
  }
  body.replaceChildren(...rows.map((o) => {
    const pin = make("input", {type: "password", class: "pin", autocomplete: "new-password", inputmode: "numeric",
                               size: "10", "aria-label": `${t("op_new_pin")}: ${o.label}`});
    const setPin = make("button", {type: "button", class: "set-pin"}, t("op_set_pin"));
    setPin.addEventListener("click", () => {
      const value = pin.value;
      pin.value = "";
      if (!OPERATOR_PIN.test(value)) { say(false, "op_bad_pin"); return; }
      patchOperator(o, {pin: value}, "w_pin");
    });
    const card = make("button", {type: "button", class: "new-card"}, t("op_new_card"));
    card.addEventListener("click", () => {
      if (confirm(t("c_op_card", o.label))) patchOperator(o, {new_card: true}, "w_card");
    });
    const toggle = make("button", {type: "button", class: o.active ? "danger retire" : "restore"},
                        t(o.active ? "op_retire" : "op_restore"));
    toggle.addEventListener("click", () => {
      if (o.active && !confirm(t("c_op_retire", o.label))) return;
      patchOperator(o, {active: !o.active}, o.active ? "w_retired" : "w_active");
    });
    const state = make("span", {class: `badge ${o.active ? "st-active" : "st-disabled"}`,
                                "data-state": o.active ? "active" : "retired"}, t(o.active ? "op_active" : "op_retired"));
    return make("tr", {"data-operator": o.id, "data-label": o.label, "data-active": o.active ? "1" : "0"},
                make("td", {}, o.label), make("td", {}, make("code", {}, o.id)), make("td", {}, o.unit_code),
                make("td", {}, t(o.kind)), make("td", {}, t(o.has_pin ? "yes" : "no")),
                make("td", {}, t(o.has_card ? "yes" : "no")), make("td", {}, state),
                make("td", {}, pin, " ", setPin, " ", card, " ", toggle));
  }));
}

async function patchOperator(operator, change, what) {
  const changed = await api("PATCH", `/api/v1/operators/${encodeURIComponent(operator.id)}`, change);
  if (changed === null) return;
  if (changed.card_token) showCard(changed);
  say(true, "r_op_saved", operator.label, t(what));
  await loadOperators();
}

async function createOperator(event) {
  event.preventDefault();
  const form = event.target;
  const pin = field(form, "pin").value;
  field(form, "pin").value = "";
  const card = field(form, "card").checked;
  if (!pin && !card) { say(false, "op_need_secret"); return; }
  if (pin && !OPERATOR_PIN.test(pin)) { say(false, "op_bad_pin"); return; }
  const body = {unit_code: field(form, "unit_code").value.trim(), kind: field(form, "kind").value,
                label: field(form, "label").value.trim(), card};
  if (pin) body.pin = pin;
  const created = await api("POST", "/api/v1/operators", body);
  if (created === null) return;
  form.reset();
  if (created.card_token) showCard(created);
  else hideCard();
  say(true, "r_op_created", created.label, created.id);
  await loadOperators();
}
