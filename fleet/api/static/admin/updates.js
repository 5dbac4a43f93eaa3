"use strict";
// Updates (?view=updates): upload a signed bundle (PUT /api/v1/bundles/{name}), the bundles held,
// the rollout wizard (bundle, version, target units or devices, phases with their thresholds,
// start now or later: POST /api/v1/rollouts, whose 422 names each field, shown beside it), and
// the rollouts with their progress, refreshed while one runs, paused, resumed or cancelled
// (POST /api/v1/rollouts/{id}/{action}). Per-device progress: /operations?rollout=<id>.

addTexts({
  updates: ["Cập nhật phần mềm", "Updates"], h_upload: ["Tải lên gói cập nhật đã ký", "Upload a signed update bundle"],
  bundle_file: ["Tệp gói (.bundle)", "Bundle file (.bundle)"], upload: ["Tải lên", "Upload"], bundle: ["Gói", "Bundle"],
  size: ["Dung lượng", "Size"], stored_at: ["Tải lên lúc", "Uploaded"],
  bundle_note: ["Máy chủ có khóa công khai (bundles.public_keys) thì kiểm tra chữ ký ngay khi tải lên, gói sai bị từ chối; mỗi thiết bị kiểm tra lại trước khi cài.",
                "With its public keys configured (bundles.public_keys) the fleet checks the signature on upload and refuses a bad bundle; each device checks again before installing."],
  r_uploaded: [(n, s) => `Đã tải lên ${n} (${s}).`, (n, s) => `${n} uploaded (${s}).`],
  r_uploaded_signed: [(n, s, v) => `Đã tải lên ${n} (${s}): chữ ký hợp lệ, phiên bản ${v}.`,
                      (n, s, v) => `${n} uploaded (${s}): signature valid, version ${v}.`],
  bad_bundle_name: ["Tên tệp phải kết thúc bằng .bundle (chữ, số, . _ -).", "The file name must end in .bundle (letters, digits, . _ -)."],
  h_rollout: ["Triển khai cập nhật theo giai đoạn", "Roll out an update in phases"],
  rollout: ["Đợt triển khai", "Rollout"], rollout_id: ["Mã đợt", "Rollout id"], version: ["Phiên bản", "Version"],
  kind: ["Loại", "Kind"], target_unit: ["Đơn vị (kể cả trực thuộc; trống: tất cả)", "Unit (and those under it; empty: all)"],
  target_devices: ["Chỉ các thiết bị (mã, cách nhau bởi dấu phẩy)", "Only these devices (ids, comma-separated)"],
  device_timeout_h: ["Thời hạn mỗi thiết bị (giờ)", "Time allowed per device (hours)"],
  start_now: ["Bắt đầu ngay", "Start now"], phase: ["Giai đoạn", "Phase"],
  phase_percent: ["Tổng số thiết bị đến hết giai đoạn (%)", "Devices updated by its end (%)"],
  success_threshold: ["Tỷ lệ thành công để sang giai đoạn sau (%)", "Success needed to go on (%)"],
  error_threshold: ["Tỷ lệ lỗi thì dừng tất cả (%)", "Failures that halt everything (%)"],
  phases_note: ["Giai đoạn tăng dần và kết thúc ở 100%.", "Phases increase and end at 100%."],
  window_start: ["Cài từ (giờ địa phương, HH:MM)", "Install from (local time, HH:MM)"],
  window_end: ["đến", "until"],
  window_hint: ["trống: giữ khung giờ bảo trì đang đặt (Cấu hình)", "empty: keep the maintenance window set (Settings)"],
  window_needs_unit: ["Khung giờ bảo trì được đặt cho một đơn vị (hoặc cả tỉnh): hãy chọn đơn vị, không chọn từng thiết bị.",
                      "A maintenance window is set for a unit (or the whole province): choose a unit, not single devices."],
  r_window: [(id, started, scope, a, b) => `Đã lập đợt ${id}${started ? ", đã bắt đầu" : ""}; khung giờ cài đặt của ${scope}: ${a}–${b}.`,
             (id, started, scope, a, b) => `Rollout ${id} planned${started ? " and started" : ""}; ${scope} installs between ${a} and ${b}.`],
  province: ["cả tỉnh", "the province"],
  add_phase: ["Thêm giai đoạn", "Add a phase"], remove: ["Bỏ", "Remove"], plan_rollout: ["Lập đợt triển khai", "Plan the rollout"],
  h_rollouts: ["Các đợt triển khai", "Rollouts"], devices_states: ["Thiết bị", "Devices"], details: ["Chi tiết", "Details"],
  pause: ["Tạm dừng", "Pause"], resume: ["Tiếp tục", "Resume"], start: ["Bắt đầu", "Start"], cancel: ["Hủy đợt", "Cancel"],
  rs_created: ["Chưa bắt đầu", "Not started"], rs_running: ["Đang chạy", "Running"], rs_paused: ["Tạm dừng", "Paused"],
  rs_halted: ["Đã dừng do lỗi", "Halted"], rs_cancelled: ["Đã hủy", "Cancelled"], rs_completed: ["Hoàn tất", "Completed"],
  ds_pending: ["chờ", "pending"], ds_offered: ["đã gửi", "offered"], ds_waiting: ["chờ giờ bảo trì", "waiting"],
  ds_downloading: ["đang tải", "downloading"], ds_verifying: ["đang kiểm tra", "verifying"], ds_installing: ["đang cài", "installing"],
  ds_rebooting: ["khởi động lại", "rebooting"], ds_succeeded: ["thành công", "succeeded"], ds_rolled_back: ["đã quay lại", "rolled back"],
  ds_failed: ["lỗi", "failed"], ds_timed_out: ["quá hạn", "timed out"],
  rollout_invalid: [(n) => `Chưa lập: ${n} lỗi, xem bên cạnh từng ô.`, (n) => `Not planned: ${n} problems, beside each field.`],
  r_planned: [(id, n, started) => `Đã lập đợt ${id} cho ${n} thiết bị${started ? ", đã bắt đầu" : ""}.`,
              (id, n, started) => `Rollout ${id} planned for ${n} devices${started ? " and started" : ""}.`],
  r_control: [(id, s) => `Đợt ${id}: ${s}.`, (id, s) => `Rollout ${id}: ${s}.`],
  c_cancel: [(id) => `Hủy đợt ${id}? Thiết bị chưa bắt đầu sẽ không cài bản này.`,
             (id) => `Cancel rollout ${id}? Devices that have not started will not install it.`],
});

SECTIONS.updates = (() => {
  const LIVE = ["created", "running", "paused"];
  const fields = $("#rollout-fields");
  const phases = $("#phases tbody");
  let bundles = [];
  let watching = null;

  const sizeOf = (n) => n >= 1048576 ? `${(n / 1048576).toFixed(1)} MB` : `${Math.ceil(n / 1024)} kB`;
  const stamp = () => {  // now, in the province's zone: YYYYMMDD-HHMMSS (two rollouts planned in a minute differ)
    const p = Object.fromEntries(new Intl.DateTimeFormat("en-CA", {timeZone: SOHOA.zone, year: "numeric", month: "2-digit",
      day: "2-digit", hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23"})
      .formatToParts(new Date()).map((x) => [x.type, x.value]));
    return `${p.year}${p.month}${p.day}-${p.hour}${p.minute}${p.second}`;
  };
  const number = (raw) => /^-?\d+(\.\d+)?$/.test(raw.trim()) ? Number(raw.trim()) : raw.trim();
  const share = (raw) => typeof number(raw) === "number" ? number(raw) / 100 : number(raw);

  function drawFields() {
    const keep = {};
    for (const input of fields.querySelectorAll("[data-path]")) keep[input.dataset.path] = input.type === "checkbox" ? input.checked : input.value;
    const input = (attrs) => make("input", {type: "text", autocomplete: "off", ...attrs});
    const bundle = make("select", {name: "bundle"}, make("option", {value: ""}, "—"),
                        ...bundles.map((b) => make("option", {value: b.name}, b.name)));
    const kind = make("select", {name: "kind"}, ...["app", "model"].map((k) => make("option", {value: k}, t(`v_${k}`))));
    const start = make("input", {type: "checkbox", name: "start"});
    start.checked = true;
    const L = (path, key, control, hint) => SchemaForm.labelled($("#rollout-form"), path, t(key), control, hint);
    fields.replaceChildren(make("div", {class: "fields-row"},
      L("rollout_id", "rollout_id", input({name: "rollout_id", size: "24", value: `cap-nhat-${stamp()}`})),
      L("bundle", "bundle", bundle),
      L("version", "version", input({name: "version", size: "10"})),
      L("kind", "kind", kind),
      L("target.unit_subtree", "target_unit", input({name: "unit_subtree", size: "14", list: "unit-list"})),
      L("target.device_ids", "target_devices", input({name: "device_ids", size: "24"})),
      L("device_timeout_s", "device_timeout_h", input({name: "device_timeout_h", size: "6", inputmode: "decimal", value: "6"})),
      L("window.start", "window_start", input({name: "window_start", size: "6", placeholder: "01:00"}), t("window_hint")),
      L("window.end", "window_end", input({name: "window_end", size: "6", placeholder: "05:00"})),
      make("label", {class: "check"}, start, make("span", {}, t("start_now")))));
    for (const node of fields.querySelectorAll("[data-path]")) {
      const kept = keep[node.dataset.path];
      if (kept !== undefined) node.value = kept;
    }
    bundle.addEventListener("change", () => {
      const version = /-(\d[\w.-]*)\.bundle$/.exec(bundle.value);
      const field = fields.querySelector("[name=version]");
      if (version && !field.value) field.value = version[1];
    });
  }

  function phaseRow(values) {
    const index = phases.rows.length;
    const cell = (key, value) => {
      const control = make("input", {type: "text", size: "6", inputmode: "decimal", value: String(value),
                                     "aria-label": `${t(key)} — ${t("phase")} ${index + 1}`});
      return make("td", {}, SchemaForm.labelled($("#rollout-form"), `phases.${index}.${key === "phase_percent" ? "percent" : key}`,
                                                "", control));
    };
    const remove = make("button", {type: "button", class: "danger"}, t("remove"));
    remove.addEventListener("click", () => { row.remove(); renumber(); });
    const row = make("tr", {}, make("td", {}, String(index + 1)), cell("phase_percent", values[0]),
                     cell("success_threshold", values[1]), cell("error_threshold", values[2]), make("td", {}, remove));
    phases.append(row);
  }

  function renumber() {
    const rows = [...phases.rows].map((r) => [...r.querySelectorAll("input")].map((i) => i.value));
    phases.replaceChildren();
    for (const values of rows) phaseRow(values);
  }

  function body() {
    const value = (name) => fields.querySelector(`[name=${name}]`).value.trim();
    const target = {};
    if (value("unit_subtree")) target.unit_subtree = value("unit_subtree");
    if (value("device_ids")) target.device_ids = value("device_ids").split(",").map((d) => d.trim()).filter(Boolean);
    const hours = number(value("device_timeout_h"));
    return {
      rollout_id: value("rollout_id"), bundle: value("bundle"), version: value("version"), kind: value("kind"), target,
      phases: [...phases.rows].map((r) => {
        const [percent, success, error] = [...r.querySelectorAll("input")].map((i) => i.value);
        return {percent: number(percent), success_threshold: share(success), error_threshold: share(error)};
      }),
      device_timeout_s: typeof hours === "number" ? hours * 3600 : hours,
      start: fields.querySelector("[name=start]").checked,
    };
  }

  // The maintenance window asked for in the wizard, as the settings layer of the rollout's target
  // unit (or the province's) with that window: checked against the contract before anything is
  // planned, stored only once the rollout is planned, and the rollout started only after that, so
  // no device is offered the update under the old window. null: no window asked for.
  async function windowLayer(plan) {
    const value = (name) => fields.querySelector(`[name=${name}]`).value.trim();
    if (!value("window_start") && !value("window_end")) return {layer: null, problems: []};
    if (plan.target.device_ids && !plan.target.unit_subtree) {
      return {layer: null, problems: [{loc: ["body", "window", "start"], msg: t("window_needs_unit"), type: "window"}]};
    }
    const [scope, key] = plan.target.unit_subtree ? ["unit", plan.target.unit_subtree] : ["fleet", "default"];
    const held = await fetch(`/api/v1/settings/${scope}/${encodeURIComponent(key)}`, {credentials: "same-origin"});
    const current = held.ok ? (await held.json()).settings : {};
    const opening = {...(current.maintenance_window || {})};
    if (value("window_start")) opening.start = value("window_start");
    if (value("window_end")) opening.end = value("window_end");
    const settings = {...current, maintenance_window: opening};
    const checked = await api("POST", "/api/v1/contract/check", {settings});
    if (checked === null) return null;
    const problems = checked.problems.map((p) => p.loc[2] === "maintenance_window"
      ? {...p, loc: ["body", "window", ...p.loc.slice(3)]} : p);
    return {layer: {scope, key, settings, opening}, problems};
  }

  async function plan(event) {
    event.preventDefault();
    const form = $("#rollout-form");
    const planned = body();
    const wanted = await windowLayer(planned);
    if (wanted === null) return;
    if (wanted.problems.length) {
      say(false, "rollout_invalid", SchemaForm.show(form, wanted.problems, "body", $("#rollout-errors")));
      return;
    }
    const startNow = planned.start;
    if (wanted.layer) planned.start = false;
    const response = await fetch("/api/v1/rollouts", {method: "POST", credentials: "same-origin",
      headers: {"Content-Type": "application/json"}, body: JSON.stringify(planned)});
    const answer = await response.json().catch(() => null);
    if (response.status === 422 && answer && Array.isArray(answer.detail)) {
      say(false, "rollout_invalid", SchemaForm.show(form, answer.detail, "body", $("#rollout-errors")));
      return;
    }
    SchemaForm.show(form, [], "body", $("#rollout-errors"));
    if (!response.ok) {
      say(false, "not_done", response.status, detailOf(answer) || response.statusText);
      return;
    }
    fields.querySelector("[name=rollout_id]").value = `cap-nhat-${stamp()}`;
    if (wanted.layer) {
      const {scope, key, settings, opening} = wanted.layer;
      const stored = await api("PUT", `/api/v1/settings/${scope}/${encodeURIComponent(key)}`, {settings});
      const started = stored !== null && startNow
        && await api("POST", `/api/v1/rollouts/${encodeURIComponent(answer.rollout_id)}/start`) !== null;
      if (stored !== null && (started || !startNow)) {
        say(true, "r_window", answer.rollout_id, started, scope === "unit" ? key : t("province"),
            opening.start ?? "01:00", opening.end ?? "05:00");
      }
      await loadRollouts();
      return;
    }
    const total = answer.summary.phases.reduce((n, p) => n + p.devices, 0);
    say(true, "r_planned", answer.rollout_id, total, answer.summary.status === "running");
    await loadRollouts();
  }

  async function control(id, action) {
    if (action === "cancel" && !confirm(t("c_cancel", id))) return;
    const done = await api("POST", `/api/v1/rollouts/${encodeURIComponent(id)}/${action}`);
    if (done === null) return;
    say(true, "r_control", id, t(`rs_${done.summary.status}`));
    await loadRollouts();
  }

  async function upload(event) {
    event.preventDefault();
    const [file] = field(event.target, "file").files;
    if (!file) return;
    if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,127}\.bundle$/.test(file.name)) {
      say(false, "bad_bundle_name");
      return;
    }
    const response = await fetch(`/api/v1/bundles/${encodeURIComponent(file.name)}`, {method: "PUT", credentials: "same-origin",
      headers: {"Content-Type": "application/octet-stream"}, body: file});
    const answer = await response.json().catch(() => null);
    if (!response.ok) {
      say(false, "not_done", response.status, detailOf(answer) || response.statusText);
      return;
    }
    if (answer.signature_checked) say(true, "r_uploaded_signed", answer.name, sizeOf(answer.size), answer.version);
    else say(true, "r_uploaded", answer.name, sizeOf(answer.size));
    event.target.reset();
    await loadBundles();
    fields.querySelector("[name=bundle]").value = answer.name;
    if (answer.version) fields.querySelector("[name=version]").value = answer.version;
    fields.querySelector("[name=bundle]").dispatchEvent(new Event("change"));
  }

  async function loadBundles() {
    const held = await api("GET", "/api/v1/bundles");
    if (held === null) return;
    bundles = held;
    $("#bundles tbody").replaceChildren(...held.map((b) => make("tr", {"data-bundle": b.name},
      make("td", {}, b.name), make("td", {}, sizeOf(b.size)), make("td", {}, make("code", {}, b.sha256 ?? "")),
      make("td", {}, SOHOA.when(b.stored_at)))));
    if (!held.length) $("#bundles tbody").append(make("tr", {}, make("td", {colspan: "4"}, t("none"))));
    drawFields();
  }

  async function loadRollouts() {
    const rows = await api("GET", "/api/v1/rollouts");
    if (rows === null) return;
    $("#rollout-list tbody").replaceChildren(...rows.map((r) => {
      const s = r.summary;
      const actions = make("td", {});
      const button = (action, danger) => {
        const b = make("button", {type: "button", class: danger ? `danger ${action}` : action}, t(action));
        b.addEventListener("click", () => control(r.rollout_id, action));
        actions.append(b, " ");
      };
      if (s.status === "created") button("start");
      if (s.status === "running") button("pause");
      if (s.status === "paused" || s.status === "halted") button("resume");
      if (LIVE.includes(s.status) || s.status === "halted") button("cancel", true);
      actions.append(make("a", {href: `/operations?rollout=${encodeURIComponent(r.rollout_id)}${lang === "en" ? "&lang=en" : ""}`},
                          t("details")));
      const states = Object.entries(s.states).map(([k, n]) => `${t(`ds_${k}`)} ${n}`).join(" · ");
      return make("tr", {"data-rollout": r.rollout_id, "data-status": s.status},
                  make("td", {}, r.rollout_id), make("td", {}, r.version ?? ""),
                  make("td", {}, make("span", {class: `badge st-${s.status}`}, t(`rs_${s.status}`))),
                  make("td", {}, `${s.phase}/${s.phases.length}`), make("td", {}, states),
                  make("td", {}, SOHOA.when(r.created_at)), actions);
    }));
    if (!rows.length) $("#rollout-list tbody").append(make("tr", {}, make("td", {colspan: "7"}, t("none"))));
    clearTimeout(watching);
    if (rows.some((r) => r.summary.status === "running")) watching = setTimeout(loadRollouts, 3000);
  }

  function label() {
    for (const id of ["upload", "rollout", "rollouts"]) $(`#h-${id}`).textContent = t(`h_${id}`);
    $("#phases-caption").textContent = t("phases_note");
    if (view === "updates") {
      drawFields();
      renumber();
    }
  }

  async function load() {
    if (!phases.rows.length) for (const p of [[2, 100, 10], [20, 100, 10], [100, 100, 10]]) phaseRow(p);
    await Promise.all([loadBundles(), loadRollouts()]);
  }

  $("#add-phase").addEventListener("click", () => phaseRow(["", 100, 10]));
  $("#rollout-form").addEventListener("submit", plan);
  $("#bundle-form").addEventListener("submit", upload);
  return {load, label};
})();
