"use strict";
// Desired settings of one level (?view=settings&scope=fleet|unit|device&key=...): the level's
// own settings as a form drawn from the remote settings' schema, empty fields inherited from
// the level above (device > unit > fleet). Checked by the fleet as the admin types; saved (PUT
// /api/v1/settings/{scope}/{key}, which replaces the level) only when the check finds nothing.

addTexts({
  settings: ["Cấu hình", "Settings"], h_settings: ["Cấu hình mong muốn", "Desired settings"],
  scope: ["Cấp", "Level"], layer_key: ["Đơn vị / thiết bị", "Unit / device"],
  sc_fleet: ["Toàn tỉnh (mặc định)", "Whole fleet (default)"], sc_unit: ["Một đơn vị (và các đơn vị trực thuộc)", "A unit (and units under it)"],
  sc_device: ["Một thiết bị", "One device"],
  settings_note: ["Ô để trống: dùng giá trị của cấp trên (thiết bị > đơn vị > toàn tỉnh). Máy chủ kiểm tra từng ô khi gõ; chỉ lưu khi không còn lỗi.",
                  "An empty field inherits the level above (device > unit > whole fleet). The fleet checks each field as you type; nothing is saved while a problem remains."],
  of_fleet: ["chung toàn tỉnh", "the whole fleet"], of_unit: [(k) => `đơn vị ${k}`, (k) => `unit ${k}`],
  of_device: [(k) => `thiết bị ${k}`, (k) => `device ${k}`],
  h_layer: [(what) => `Cấu hình ${what}`, (what) => `Settings of ${what}`],
  save_settings: ["Lưu cấu hình", "Save the settings"],
  layer_version: [(v) => `Phiên bản ${v} của cấp này.`, (v) => `Version ${v} of this level.`],
  layer_new: ["Cấp này chưa có cấu hình riêng.", "This level has no settings of its own yet."],
  sync_ok: [(v) => `Thiết bị đang chạy đúng cấu hình (phiên bản ${v}).`, (v) => `The device runs its desired settings (version ${v}).`],
  sync_diff: [(n, e) => `Thiết bị chưa chạy cấu hình mong muốn: ${n} khác biệt${e ? `; thiết bị từ chối: ${e}` : ""}.`,
              (n, e) => `The device does not run its desired settings yet: ${n} differences${e ? `; it refused them: ${e}` : ""}.`],
  settings_invalid: [(n) => `Chưa lưu: ${n} lỗi, xem bên cạnh từng ô.`, (n) => `Not saved: ${n} problems, beside each field.`],
  r_settings_saved: [(what, v, n) => `Đã lưu cấu hình ${what} (phiên bản ${v}); ${n} thiết bị sẽ nhận cấu hình mới.`,
                     (what, v, n) => `Settings of ${what} saved (version ${v}); ${n} devices get new settings.`],
  key_needed: ["Hãy nhập mã đơn vị hoặc thiết bị.", "Enter a unit or device id."],
  s_scan: ["Quét", "Scanning"], "s_scan.dpi": ["Độ phân giải (dpi)", "Resolution (dpi)"],
  "s_scan.colour_mode": ["Chế độ màu", "Colour mode"], v_color: ["Màu (24-bit)", "Colour (24-bit)"], v_gray: ["Xám", "Gray"],
  s_quality: ["Ngưỡng chất lượng ảnh", "Quality thresholds"], "s_quality.min_sharpness": ["Độ nét tối thiểu", "Minimum sharpness"],
  "s_quality.min_paper_level": ["Độ sáng giấy tối thiểu", "Minimum paper brightness"],
  "s_quality.max_glare_fraction": ["Tỷ lệ lóa tối đa", "Largest glare share"],
  "s_quality.max_skew_deg": ["Độ nghiêng tối đa (độ)", "Largest skew (degrees)"],
  "s_quality.min_dpi": ["Độ phân giải tối thiểu (dpi)", "Lowest resolution (dpi)"],
  "s_quality.max_blank_ink": ["Ngưỡng trang trắng (tỷ lệ mực)", "Blank page below this ink share"],
  s_classifier: ["Phân loại giấy tờ", "Document classifier"], "s_classifier.model_version": ["Phiên bản mô hình", "Model version"],
  "s_classifier.min_confidence": ["Độ tin cậy tối thiểu", "Minimum confidence"],
  s_telemetry_interval_s: ["Chu kỳ báo cáo tình trạng (giây)", "Health report interval (seconds)"],
  s_kiosk_language: ["Ngôn ngữ màn hình kiosk", "Kiosk screen language"], v_vi: ["Tiếng Việt", "Vietnamese"], v_en: ["Tiếng Anh", "English"],
  s_maintenance_window: ["Khung giờ bảo trì (cài cập nhật, khởi động lại)", "Maintenance window (updates, restarts)"],
  "s_maintenance_window.start": ["Bắt đầu (HH:MM)", "Opens (HH:MM)"], "s_maintenance_window.end": ["Kết thúc (HH:MM)", "Closes (HH:MM)"],
  "s_maintenance_window.timezone": ["Múi giờ", "Time zone"],
  "s_maintenance_window.days": ["Các ngày (0 = Thứ Hai … 6 = Chủ Nhật)", "Days (0 = Monday … 6 = Sunday)"],
});

SECTIONS.settings = (() => {
  const SCOPES = ["fleet", "unit", "device"];
  const form = $("#layer-form");
  const box = $("#settings-fields");
  let layer = null;  // {scope, key} open in the form

  const labelOf = (path, node) => T[lang][`s_${path}`] !== undefined ? t(`s_${path}`) : node.title;
  const layerName = () => t(`of_${layer.scope}`, layer.key);

  function label() {
    const scopes = field(form, "scope");
    const chosen = scopes.value || params.get("scope") || "fleet";
    scopes.replaceChildren(...SCOPES.map((s) => make("option", {value: s}, t(`sc_${s}`))));
    scopes.value = chosen;
    keyField();
    $("#h-settings").textContent = t("h_settings");
    if (layer) $("#h-layer").textContent = t("h_layer", layerName());
  }

  function keyField() {
    const scope = field(form, "scope").value;
    const key = field(form, "key");
    key.disabled = scope === "fleet";
    key.setAttribute("list", scope === "device" ? "device-list" : "unit-list");
    if (scope === "fleet") key.value = "";
  }

  async function open(scope, key) {
    const [contract, response] = await Promise.all([
      SchemaForm.load(), fetch(`/api/v1/settings/${scope}/${encodeURIComponent(key)}`, {credentials: "same-origin"})]);
    if (contract === null) return;
    if (!response.ok && response.status !== 404) {
      say(false, "not_done", response.status, detailOf(await response.json().catch(() => null)) || response.statusText);
      return;
    }
    const current = response.ok ? await response.json() : null;
    layer = {scope, key};
    SchemaForm.render(box, contract.settings, current ? current.settings : {}, labelOf);
    SchemaForm.show(box, [], "settings", $("#settings-errors"));
    $("#settings-form").hidden = false;
    $("#settings-form").dataset.layer = `${scope}/${key}`;
    $("#settings-form").dataset.version = current ? String(current.version) : "0";
    $("#h-layer").textContent = t("h_layer", layerName());
    await sync(current);
  }

  // For a device: does it run what it should? (Nothing to say before it ever connected.)
  async function sync(current) {
    const line = $("#settings-sync");
    line.textContent = current ? t("layer_version", current.version) : t("layer_new");
    if (layer.scope !== "device") return;
    const response = await fetch(`/api/v1/devices/${encodeURIComponent(layer.key)}/settings`, {credentials: "same-origin"});
    if (!response.ok) return;
    const state = await response.json();
    line.textContent += " " + (state.in_sync ? t("sync_ok", state.desired_version) : t("sync_diff", state.diff.length, state.error));
  }

  async function save(event) {
    event.preventDefault();
    const settings = SchemaForm.collect(box);
    const problems = await SchemaForm.check({settings});
    if (problems === null) return;
    if (SchemaForm.show(box, problems, "settings", $("#settings-errors"))) {
      say(false, "settings_invalid", problems.length);
      return;
    }
    const path = `/api/v1/settings/${layer.scope}/${encodeURIComponent(layer.scope === "fleet" ? "default" : layer.key)}`;
    const saved = await api("PUT", path, {settings});
    if (saved === null) return;
    say(true, "r_settings_saved", layerName(), saved.version, saved.devices_changed.length);
    await open(layer.scope, layer.key);
  }

  async function load() {
    if (layer) return open(layer.scope, layer.key);
    const scope = field(form, "scope").value;
    const key = scope === "fleet" ? "default" : field(form, "key").value.trim() || params.get("key") || "";
    if (key) {
      field(form, "key").value = scope === "fleet" ? "" : key;
      await open(scope, key);
    }
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const scope = field(form, "scope").value;
    const key = scope === "fleet" ? "default" : field(form, "key").value.trim();
    if (!key) {
      say(false, "key_needed");
      return;
    }
    history.replaceState(null, "", `?view=settings&scope=${scope}&key=${encodeURIComponent(key)}${lang === "en" ? "&lang=en" : ""}`);
    open(scope, key);
  });
  field(form, "scope").addEventListener("change", keyField);
  $("#settings-form").addEventListener("submit", save);
  SchemaForm.live(box, () => ({settings: SchemaForm.collect(box)}), "settings", $("#settings-errors"));
  return {load, label};
})();
