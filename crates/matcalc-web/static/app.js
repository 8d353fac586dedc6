// The matcalc page: reads the inputs, asks the server (/api/derive, /api/parse,
// /api/check), shows what comes back. No math here: the server renders MathML.
// State lives in the URL, so a result can be shared by its link.

const $ = (id) => document.getElementById(id);

const HEADLINE = {
  expr: "norm2(sin(W2*cos(W1*x)))^2",
  decls: "W1: matrix(r, 100); W2: matrix(100, r); r: dim in 1..95",
  wrt: "x",
};

const state = { form: "nested", target: "numpy", last: null, seq: 0, timer: 0 };

// ---------------------------------------------------------------------------
// Inputs and the URL

function inputs() {
  return {
    expr: $("expr").value,
    decls: $("decls").value,
    wrt: $("wrt").value.split(/[,\s]+/).filter((w) => w.length > 0),
    order: Number($("order").value) || 1,
  };
}

function readUrl() {
  const q = new URLSearchParams(location.search);
  const given = q.has("expr");
  $("expr").value = given ? q.get("expr") : HEADLINE.expr;
  $("decls").value = given ? q.get("decls") || "" : HEADLINE.decls;
  $("wrt").value = given ? q.get("wrt") || "" : HEADLINE.wrt;
  $("order").value = q.get("order") || "1";
  const form = q.get("form");
  if (["nested", "cascade", "diag"].includes(form)) state.form = form;
}

function writeUrl() {
  const i = inputs();
  const q = new URLSearchParams({ expr: i.expr, decls: i.decls, wrt: i.wrt.join(","), order: String(i.order), form: state.form });
  history.replaceState(null, "", `${location.pathname}?${q}`);
}

// ---------------------------------------------------------------------------
// Talking to the server

async function post(path, body) {
  let r;
  try {
    r = await fetch(path, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
  } catch (e) {
    return { ok: false, body: { kind: "request", message: `the server cannot be reached (${e.message})`, hint: "is `matcalc serve` still running?" } };
  }
  const body_ = await r.json().catch(() => ({ kind: "request", message: `HTTP ${r.status}` }));
  return { ok: r.ok, status: r.status, body: body_ };
}

function schedule() {
  clearTimeout(state.timer);
  state.timer = setTimeout(run, 300);
}

async function run() {
  clearTimeout(state.timer);
  const seq = ++state.seq;
  writeUrl();
  const i = inputs();
  if (!i.expr.trim()) {
    clearError();
    return;
  }
  $("check-result").hidden = true;
  document.querySelector(".result").classList.add("loading");
  const r = await post("/api/derive", { ...i, form: state.form });
  if (seq !== state.seq) return; // a newer request is on its way
  document.querySelector(".result").classList.remove("loading");
  if (r.ok) {
    clearError();
    state.last = r.body;
    showParsed(r.body);
    showResult();
    showCode();
    return;
  }
  if (i.wrt.length === 0 && r.body.kind === "usage") {
    // Nothing to differentiate by yet: show how the input reads, and ask.
    const p = await post("/api/parse", { expr: i.expr, decls: i.decls });
    if (seq !== state.seq) return;
    if (p.ok) {
      clearError();
      showParsed(p.body);
      askForWrt(p.body.variables);
      return;
    }
    showError(p.body);
    return;
  }
  showError(r.body);
}

// ---------------------------------------------------------------------------
// How the input was read, and the variables table

function showParsed(p) {
  const echo = $("echo");
  echo.replaceChildren();
  const badge = el("span", "badge", p.input.syntax === "latex" ? "LaTeX" : "matcalc");
  echo.append(badge, "read as ", el("code", "", p.input.expr));
  if (p.input.syntax === "latex" && p.input.decls) echo.append(" with ", el("code", "", p.input.decls));
  if (p.input.wrt.length) echo.append(" · by ", el("code", "", p.input.wrt.join(", ")));
  echo.hidden = false;
  showVariables(p.variables);
}

function showVariables(vars) {
  const body = $("vars").tBodies[0];
  body.replaceChildren();
  for (const v of vars) {
    const kind = document.createElement("select");
    for (const k of ["scalar", "vector", "matrix", "symmetric"]) kind.append(new Option(k, k, false, k === v.kind));
    kind.setAttribute("aria-label", `kind of ${v.name}`);
    const dims = document.createElement("input");
    dims.type = "text";
    dims.value = v.dims.join(", ");
    dims.disabled = v.kind === "scalar";
    dims.setAttribute("aria-label", `dimensions of ${v.name}`);
    const declare = () => setDecl(v.name, kind.value, dims);
    kind.addEventListener("change", declare);
    dims.addEventListener("change", declare);
    const row = document.createElement("tr");
    row.dataset.name = v.name;
    const status = el("span", v.declared ? "state" : "state assumed", v.declared ? "declared" : "assumed");
    row.append(td(el("span", "", v.name), "name"), td(kind), td(dims), td(status));
    body.append(row);
  }
}

/** Turn an edited row into a declaration, replacing the variable's old one. */
function setDecl(name, kind, dimsInput) {
  const want = { scalar: 0, vector: 1, matrix: 2, symmetric: 1 }[kind];
  let dims = dimsInput.value.split(",").map((d) => d.trim()).filter((d) => d.length > 0);
  while (dims.length < want) dims.push(dims[0] || "n");
  dims = dims.slice(0, want);
  dimsInput.value = dims.join(", ");
  dimsInput.disabled = want === 0;
  const decl = want === 0 ? `${name}: scalar` : `${name}: ${kind}(${dims.join(", ")})`;
  const others = $("decls").value.split(";").map((d) => d.trim()).filter((d) => d && d.split(":")[0].trim() !== name);
  $("decls").value = [...others, decl].join("; ");
  run();
}

function askForWrt(vars) {
  state.last = null;
  const ask = el("p", "muted", "Differentiate by: ");
  for (const v of vars) {
    const b = el("button", "wrt-choice", v.name);
    b.type = "button";
    b.addEventListener("click", () => {
      $("wrt").value = v.name;
      run();
    });
    ask.append(b, " ");
  }
  $("result").replaceChildren(ask);
  $("layout").textContent = "";
  $("code").textContent = "";
}

// ---------------------------------------------------------------------------
// The result

function block() {
  const f = state.last.forms;
  return f[state.form] || f.cascade; // the nested form may be too large to print
}

function showResult() {
  for (const b of document.querySelectorAll(".forms button")) b.setAttribute("aria-pressed", String(b.dataset.form === state.form));
  if (!state.last) return;
  $("result").innerHTML = block().mathml; // MathML written by the server's renderer
  const notes = state.last.derivatives.map((d) => `${d.label.text}: ${d.layout}`).concat(state.last.notes);
  $("layout").textContent = notes.join(" · ");
  const ex = state.last.explanation;
  if (ex) {
    $("explanation").innerHTML = ex.html;
  } else {
    $("explanation").replaceChildren(el("p", "muted small", "No step-by-step derivation is available for this result (see the notes)."));
  }
}

function showCode() {
  for (const t of document.querySelectorAll(".tabs button")) t.setAttribute("aria-selected", String(t.dataset.target === state.target));
  const c = state.last && state.last.code.find((c) => c.target === state.target);
  $("code").textContent = !c ? "" : c.source ?? `# not available for this target: ${c.error}`;
}

async function checkNumerically() {
  const out = $("check-result");
  out.hidden = false;
  out.className = "check-result";
  out.textContent = "checking…";
  const r = await post("/api/check", { ...inputs(), trials: 2 });
  if (!r.ok) {
    out.classList.add("fail");
    out.textContent = `error: ${r.body.message}`;
    return;
  }
  const c = r.body;
  out.classList.add(c.passed ? "pass" : "fail");
  out.textContent = `${c.passed ? "PASS" : "FAIL"}: worst relative error ${c.worst.toExponential(2)} (${c.lines.length} comparisons, tolerance ${c.tolerance})`;
}

// ---------------------------------------------------------------------------
// Errors, with the offending text highlighted

function showError(e) {
  const box = $("error");
  box.replaceChildren(el("strong", "", e.message));
  if (e.hint) box.append(el("div", "hint", `hint: ${e.hint}`));
  box.hidden = false;
  for (const id of ["expr", "decls"]) $(id).classList.remove("has-error");
  const src = $("error-source");
  src.hidden = true;
  if (!e.span || !e.origin) return;
  const field = $(e.origin === "decls" ? "decls" : "expr");
  const text = field.value;
  const [start, end] = [utf16(text, e.span.start), utf16(text, e.span.end)];
  field.classList.add("has-error");
  const mark = el("mark", "", text.slice(start, Math.max(end, start)) || " ");
  src.replaceChildren(el("span", "muted", e.origin === "decls" ? "declarations: " : ""), text.slice(0, start), mark, text.slice(Math.max(end, start)));
  src.hidden = false;
}

function clearError() {
  $("error").hidden = true;
  $("error-source").hidden = true;
  for (const id of ["expr", "decls"]) $(id).classList.remove("has-error");
}

/** A UTF-8 byte offset (as the server counts) as an index into a JS string. */
function utf16(text, byteOffset) {
  const bytes = new TextEncoder().encode(text);
  return new TextDecoder().decode(bytes.slice(0, byteOffset)).length;
}

// ---------------------------------------------------------------------------
// Copying

async function copy(text, button) {
  let ok = false;
  try {
    await navigator.clipboard.writeText(text);
    ok = true;
  } catch {
    ok = copyBySelection(text);
  }
  const label = button.dataset.label || button.textContent;
  button.dataset.label = label;
  button.textContent = ok ? "Copied" : "Copy failed";
  button.classList.toggle("done", ok);
  setTimeout(() => {
    button.textContent = label;
    button.classList.remove("done");
  }, 2000);
}

function copyBySelection(text) {
  const ta = document.createElement("textarea");
  ta.value = text;
  document.body.append(ta);
  ta.select();
  let ok = false;
  try {
    ok = document.execCommand("copy");
  } catch {
    ok = false;
  }
  ta.remove();
  return ok;
}

// ---------------------------------------------------------------------------
// Small DOM helpers and wiring

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

function td(child, cls) {
  const c = el("td", cls);
  c.append(child);
  return c;
}

function wire() {
  for (const id of ["expr", "decls", "wrt"]) $(id).addEventListener("input", schedule);
  $("order").addEventListener("change", run);
  for (const b of document.querySelectorAll(".forms button")) {
    b.addEventListener("click", () => {
      state.form = b.dataset.form;
      writeUrl();
      showResult();
    });
  }
  for (const t of document.querySelectorAll(".tabs button")) {
    t.addEventListener("click", () => {
      state.target = t.dataset.target;
      showCode();
    });
  }
  $("copy-latex").addEventListener("click", (ev) => state.last && copy(block().latex, ev.currentTarget));
  $("copy-code").addEventListener("click", (ev) => copy($("code").textContent, ev.currentTarget));
  $("share").addEventListener("click", (ev) => copy(location.href, ev.currentTarget));
  $("check").addEventListener("click", checkNumerically);
}

readUrl();
wire();
run();
