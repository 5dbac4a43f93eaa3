"use strict";
// Forms drawn from the wire contract's JSON schemas (GET /api/v1/contract): one input per leaf
// field, named by its dotted path ("scan.dpi"), empty meaning "not set here" (its default shown).
// What is typed is checked by the fleet against the same protocol models (POST
// /api/v1/contract/check, which stores nothing) while the admin types; each problem is shown
// beside its field. The section's own submit sends only once the check found nothing.
// Uses the admin page's helpers (t, api, make, addTexts).

addTexts({
  default_is: [(v) => `mặc định: ${v}`, (v) => `default: ${v}`],
  range: [(lo, hi) => `từ ${lo} đến ${hi}`, (lo, hi) => `${lo} to ${hi}`],
  list_hint: ["các số, cách nhau bởi dấu phẩy", "numbers, separated by commas"],
  not_set: ["không đặt", "not set"],
  e_greater_than_equal: ["Giá trị nhỏ hơn mức cho phép.", "Below the allowed minimum."],
  e_greater_than: ["Giá trị nhỏ hơn mức cho phép.", "Below the allowed minimum."],
  e_less_than_equal: ["Giá trị lớn hơn mức cho phép.", "Above the allowed maximum."],
  e_less_than: ["Giá trị lớn hơn mức cho phép.", "Above the allowed maximum."],
  e_int_parsing: ["Cần một số nguyên.", "A whole number is needed."],
  e_int_from_float: ["Cần một số nguyên.", "A whole number is needed."],
  e_float_parsing: ["Cần một số.", "A number is needed."],
  e_literal_error: ["Giá trị không nằm trong danh sách cho phép.", "Not one of the allowed values."],
  e_extra_forbidden: ["Khóa này không có trong giao thức.", "This key is not in the protocol."],
  e_string_pattern_mismatch: ["Sai định dạng.", "Wrong format."],
  e_string_too_long: ["Quá dài.", "Too long."],
  e_missing: ["Bắt buộc.", "Required."],
  e_value_error: [(m) => `Không hợp lệ: ${m}`, (m) => `Not valid: ${m}`],
  e_other: [(m) => `Không hợp lệ: ${m}`, (m) => `Not valid: ${m}`],
});

const SchemaForm = (() => {
  let contract = null;
  const errorId = (form, path) => `err-${form}-${path.replace(/[^A-Za-z0-9_-]/g, "_")}`;

  async function load() {
    if (contract === null) contract = await api("GET", "/api/v1/contract");
    return contract;
  }

  // A property's own schema: $ref followed, "X or null" read as an optional X.
  function resolve(root, node) {
    let out = node;
    if (out.$ref) out = {...root.$defs[out.$ref.split("/").pop()], ...out};
    if (out.anyOf) {
      const real = out.anyOf.filter((x) => x.type !== "null");
      if (real.length === 1) out = {...resolve(root, real[0]), default: out.default, title: out.title};
    }
    return out;
  }

  const shown = (v) => v === undefined || v === null ? t("not_set") : typeof v === "boolean" ? t(v ? "yes" : "no")
    : Array.isArray(v) ? v.join(",") : String(v);

  function control(formId, path, node, value, labelOf) {
    const kind = node.enum ? "enum" : node.type === "boolean" ? "bool" : node.type === "array" ? "list"
      : node.type === "integer" || node.type === "number" ? "number" : "text";
    let input;
    if (kind === "enum" || kind === "bool") {
      const choices = kind === "bool" ? [true, false] : node.enum;
      const fallback = kind === "enum" && node.default != null ? t(`v_${node.default}`) : shown(node.default);
      input = make("select", {}, make("option", {value: ""}, `— ${t("default_is", fallback)}`),
                   ...choices.map((c) => make("option", {value: JSON.stringify(c)}, typeof c === "boolean"
                     ? t(c ? "yes" : "no") : t(`v_${c}`))));
      input.value = value === undefined || value === null ? "" : JSON.stringify(value);
    } else {
      input = make("input", {type: "text", size: kind === "text" ? "22" : "10", autocomplete: "off"});
      if (kind === "number") input.setAttribute("inputmode", "decimal");
      input.value = value === undefined || value === null ? "" : Array.isArray(value) ? value.join(",") : String(value);
    }
    Object.assign(input.dataset, {path, kind});
    input.name = path;
    const hints = [];
    if (kind !== "enum" && kind !== "bool") hints.push(t("default_is", shown(node.default)));
    const lo = node.minimum ?? node.exclusiveMinimum;
    const hi = node.maximum ?? node.exclusiveMaximum;
    if (lo !== undefined && hi !== undefined) hints.push(t("range", lo, hi));
    if (kind === "list") hints.push(t("list_hint"));
    const hint = make("span", {class: "muted hint", id: `${errorId(formId, path)}-hint`}, hints.join(" · "));
    const error = make("span", {class: "field-error", id: errorId(formId, path)});
    input.setAttribute("aria-describedby", `${error.id} ${hint.id}`);
    return make("label", {class: "field"}, make("span", {}, labelOf(path, node)), input, hint, error);
  }

  function fields(formId, root, schema, path, values, labelOf) {
    const out = [];
    for (const [name, raw] of Object.entries(schema.properties || {})) {
      const node = resolve(root, raw);
      const p = path ? `${path}.${name}` : name;
      const value = values && typeof values === "object" ? values[name] : undefined;
      if (node.type === "object" && node.properties) {
        const set = make("fieldset", {"data-path": p}, make("legend", {}, labelOf(p, node)));
        set.append(...fields(formId, root, node, p, value, labelOf),
                   make("span", {class: "field-error", id: errorId(formId, p)}));
        out.push(set);
      } else {
        out.push(control(formId, p, node, value, labelOf));
      }
    }
    return out;
  }

  // One input of a hand-made form in ``box`` (its problems shown like the drawn ones): labelled,
  // named by ``path`` as the API's error locations name it, with room for its error.
  function labelled(box, path, text, input, hint) {
    input.dataset.path = path;
    const error = make("span", {class: "field-error", id: errorId(box.id, path)});
    const parts = [make("span", {}, text), input];
    if (hint) parts.push(make("span", {class: "muted hint"}, hint));
    input.setAttribute("aria-describedby", error.id);
    return make("label", {class: "field"}, ...parts, error);
  }

  // Draw ``schema``'s fields into ``box`` (a form's container), filled from ``values``.
  function render(box, schema, values, labelOf) {
    box.replaceChildren(...fields(box.id, schema, schema, "", values, labelOf));
  }

  function parsed(input) {
    const raw = input.value.trim();
    if (input.dataset.kind === "enum" || input.dataset.kind === "bool") return JSON.parse(raw);
    if (input.dataset.kind === "number") return /^-?\d+(\.\d+)?$/.test(raw) ? Number(raw) : raw;
    if (input.dataset.kind === "list") {
      return raw.split(",").map((x) => x.trim()).filter(Boolean).map((x) => /^-?\d+$/.test(x) ? Number(x) : x);
    }
    return raw;
  }

  // What the fields of ``box`` hold, as the nested object the API takes (empty fields left out).
  function collect(box) {
    const out = {};
    for (const input of box.querySelectorAll("[data-kind]")) {
      if (input.value.trim() === "") continue;
      const path = input.dataset.path.split(".");
      let node = out;
      for (const key of path.slice(0, -1)) node = node[key] ??= {};
      node[path[path.length - 1]] = parsed(input);
    }
    return out;
  }

  function message(problem) {
    const key = `e_${problem.type}`;
    return T[lang][key] !== undefined ? t(key, problem.msg) : t("e_other", problem.msg);
  }

  // Show each problem (a 422's detail, loc from "body" down) beside its field in ``box``; those
  // naming no field (an unknown key) go to ``rest``. Returns how many there were.
  function show(box, problems, where, rest) {
    for (const e of box.querySelectorAll(".field-error")) e.textContent = "";
    for (const e of box.querySelectorAll("[aria-invalid]")) e.removeAttribute("aria-invalid");
    const unplaced = [];
    for (const problem of problems) {
      const loc = problem.loc.slice(problem.loc[0] === "body" ? 1 : 0);
      const path = (loc[0] === where ? loc.slice(1) : loc).map(String);
      let target = null;
      for (let n = path.length; n > 0 && target === null; n--) {
        target = box.querySelector(`[data-path="${CSS.escape(path.slice(0, n).join("."))}"]`);
      }
      if (target === null) {
        unplaced.push(`${path.join(".")}: ${message(problem)}`);
        continue;
      }
      const error = document.getElementById(errorId(box.id, target.dataset.path));
      error.textContent = [error.textContent, message(problem)].filter(Boolean).join(" ");
      if (["INPUT", "SELECT", "TEXTAREA"].includes(target.tagName)) target.setAttribute("aria-invalid", "true");
    }
    if (rest) {
      rest.replaceChildren(...unplaced.map((text) => make("li", {}, text)));
      rest.hidden = !unplaced.length;
    }
    box.dataset.problems = String(problems.length);
    return problems.length;
  }

  // The fleet's verdict on ``body`` ({settings} or {command, args}); null when it did not answer.
  async function check(body) {
    const answer = await api("POST", "/api/v1/contract/check", body);
    return answer === null ? null : answer.problems;
  }

  // Check ``box`` whenever it changes (after a short pause); ``body()`` builds what to check.
  function live(box, body, where, rest) {
    let timer = null;
    let asked = 0;
    const run = async () => {
      const mine = ++asked;
      const problems = await check(body());
      if (problems !== null && mine === asked) show(box, problems, where, rest);
    };
    box.addEventListener("input", () => {
      clearTimeout(timer);
      box.dataset.problems = "checking";
      timer = setTimeout(run, 250);
    });
    box.addEventListener("change", () => { clearTimeout(timer); run(); });
  }

  return {load, render, collect, show, check, live, labelled};
})();
