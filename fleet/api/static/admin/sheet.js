"use strict";
// The setup sheet for a batch of SD cards (enrollment view): one single-use enrollment token per
// card (POST /api/v1/enrollment-tokens, max_devices 1), each as a card with its QR code (the
// server's SVG: token, unit, CA pin, enrollment URL), shown once and printed on its own (the
// page's print style keeps only the sheet). Hiding the sheet drops the tokens from the page.

addTexts({
  h_sheet: ["Phiếu cài đặt cho một lô thẻ nhớ", "Setup sheet for a batch of SD cards"],
  sheet_cards: ["Số thẻ nhớ", "SD cards"], sheet_issue: ["Cấp mã và lập phiếu", "Issue tokens and draw the sheet"],
  sheet_print: ["In phiếu", "Print the sheet"],
  sheet_once: ["Các mã chỉ hiện MỘT lần: in phiếu ngay, cất phiếu như mật khẩu.",
               "The tokens are shown ONCE: print the sheet now and keep it like a password."],
  sheet_card: [(i, n) => `Thẻ nhớ ${i}/${n}`, (i, n) => `SD card ${i}/${n}`],
  sheet_title: [(u) => `Phiếu cài đặt kiosk — đơn vị ${u}`, (u) => `Kiosk setup sheet — unit ${u}`],
  r_sheet: [(n, u) => `Đã cấp ${n} mã dùng một lần cho đơn vị ${u}; in phiếu bên dưới.`,
            (n, u) => `${n} single-use tokens issued for unit ${u}; print the sheet below.`],
  r_sheet_partial: [(n, want) => `Chỉ cấp được ${n}/${want} mã; phiếu có ${n} thẻ.`,
                    (n, want) => `Only ${n} of ${want} tokens issued; the sheet has ${n} cards.`],
});

(() => {
  const form = $("#sheet-form");
  const sheet = $("#setup-sheet");

  function card(issued, index, count) {
    const qr = make("div", {class: "qr"});
    qr.innerHTML = issued.qr_svg;  // the server's own SVG, made from the token
    const row = (key, value) => [make("dt", {}, t(key)), make("dd", {}, value)];
    return make("article", {class: "sd-card", "data-token": issued.token_id},
                make("h3", {}, t("sheet_card", index, count)), qr,
                make("dl", {}, ...row("unit_code", issued.unit_code), ...row("token_id", issued.token_id),
                     ...row("token", make("code", {}, issued.token)), ...row("ca_pin", make("code", {}, issued.ca_pin)),
                     ...row("enroll_url", issued.enroll_url), ...row("expires_at", SOHOA.when(issued.expires_at))));
  }

  async function issue(event) {
    event.preventDefault();
    const count = Number(field(form, "count").value);
    const unit = field(form, "unit_code").value.trim();
    const body = {unit_code: unit, ttl_hours: Number(field(form, "ttl_hours").value), max_devices: 1,
                  require_approval: field(form, "require_approval").checked};
    const cards = [];
    for (let i = 1; i <= count; i++) {
      const issued = await api("POST", "/api/v1/enrollment-tokens", body);
      if (issued === null) break;  // the status line says why
      cards.push(issued);
    }
    if (cards.length) {
      sheet.replaceChildren(make("h2", {class: "sheet-title"}, t("sheet_title", unit)),
                            ...cards.map((c, i) => card(c, i + 1, cards.length)));
      $("#sheet-print").hidden = false;
      document.body.classList.add("with-sheet");
      if (cards.length === count) say(true, "r_sheet", count, unit);
      else say(false, "r_sheet_partial", cards.length, count);
    }
    await loadEnrollment();
  }

  function hide() {
    sheet.replaceChildren();
    $("#sheet-print").hidden = true;
    document.body.classList.remove("with-sheet");
  }

  form.addEventListener("submit", issue);
  $("#sheet-printit").addEventListener("click", () => window.print());
  $("#sheet-hide").addEventListener("click", hide);
})();
