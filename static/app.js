/* MMATS dashboard: plain JS, no build step. Live data from the SSE stream (/api/v1/stream) plus REST
 * refreshes of the visible tab. Every action goes through the same HTTP API as the CLI and needs the
 * API token (kept in sessionStorage of this tab only). */
"use strict";

const API = "/api/v1";
const $ = (sel, root = document) => root.querySelector(sel);
const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));

const state = {
  token: sessionStorage.getItem("mmats_token") || "",
  tab: "overview",
  status: null,
  equity: [],            // {t, equity, drawdown}
  market: "crypto",
  symbol: null,
  markets: [],
  logs: [],
  logSeq: 0,
  histOffset: 0,
  histLimit: 25,
  side: "BUY",
  refreshing: false,
  connected: false,
  charts: {},
  lastEventId: null,
};

/* ------------------------------------------------------------------ formatting */
const nf2 = new Intl.NumberFormat("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 });
const nf0 = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 });
function num(x) { const v = typeof x === "number" ? x : parseFloat(x); return Number.isFinite(v) ? v : 0; }
function money(x) { return nf2.format(num(x)); }
function signed(x) { const v = num(x); return (v > 0 ? "+" : "") + nf2.format(v); }
function pct(x, digits = 2) { return (num(x) * 100).toFixed(digits) + "%"; }
function qty(x) { const v = num(x); return Math.abs(v) >= 1000 ? nf2.format(v) : String(+v.toFixed(6)); }
function price(x) { const v = num(x); return v >= 100 ? nf2.format(v) : String(+v.toFixed(6)); }
function shortTime(iso) { if (!iso) return "—"; return iso.replace("T", " ").replace(/\.\d+Z$|Z$/, ""); }
function hhmm(iso) { if (!iso) return "—"; const s = shortTime(iso); return s.slice(5, 16); }
function timeCell(iso, full) { return td(full ? shortTime(iso) : hhmm(iso), "time"); }
/* The colour rule, mirrored from mmats/reports/colors.py (keep the two in step): colour says what is good
 * for the metric, never a rank. "diverging" metrics are green above their neutral value and red below
 * (0 for P&L, returns and Sharpe; 1 for profit factor), "loss" metrics (drawdowns, given as negative
 * fractions) are red when below 0 and never green, "neutral" ones (counts, win rate, holding time,
 * fees) are never red or green. An unknown metric is neutral, so nothing is called good by mistake. */
const SCALE = { signed: { kind: "diverging", center: 0 }, ratio: { kind: "diverging", center: 1 },
  loss: { kind: "loss" }, neutral: { kind: "neutral" } };
const METRIC_SCALES = {
  total_return: SCALE.signed, cagr: SCALE.signed, sharpe: SCALE.signed, sortino: SCALE.signed, calmar: SCALE.signed,
  best_trade: SCALE.signed, worst_trade: SCALE.signed, return: SCALE.signed, pnl: SCALE.signed, expectancy: SCALE.signed,
  profit_factor: SCALE.ratio, payoff_ratio: SCALE.ratio,
  max_drawdown: SCALE.loss, avg_drawdown: SCALE.loss, drawdown: SCALE.loss,
  win_rate: SCALE.neutral, num_trades: SCALE.neutral, avg_trade_duration_s: SCALE.neutral, fees: SCALE.neutral,
  efficiency: { kind: "diverging", center: 0.5 },
};
function finite(x) {
  if (x === null || x === undefined || x === "" || typeof x === "boolean") return null;
  const v = typeof x === "number" ? x : parseFloat(x);
  return Number.isNaN(v) ? null : v;
}
/* The CSS class ("pos", "neg" or "") of a cell or KPI showing `value` of `metric` (as colors.tone). */
function tone(metric, value) {
  const scale = METRIC_SCALES[String(metric).replace(/^[+-]/, "")] || SCALE.neutral;
  const v = finite(value);
  if (v === null) return "";
  if (scale.kind === "diverging") return v > scale.center ? "pos" : v < scale.center ? "neg" : "";
  if (scale.kind === "loss") return v < 0 ? "neg" : "";
  return "";
}
function dur(s) {
  s = Math.max(0, Math.floor(num(s)));
  const d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600), m = Math.floor((s % 3600) / 60);
  return d ? `${d}d ${h}h` : h ? `${h}h ${m}m` : `${m}m ${s % 60}s`;
}

/* --------------------------------------------------------------------- DOM */
function el(tag, props = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (v === undefined || v === null) continue;
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = v;
    else if (k === "dataset") Object.assign(e.dataset, v);
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const c of children) if (c !== null && c !== undefined) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}
function tag(text, kind) { return el("span", { class: `tag ${kind || text}`, text }); }
function td(content, klass) {
  const c = el("td", { class: klass });
  if (content instanceof Node) c.append(content); else c.textContent = content === undefined || content === null ? "" : String(content);
  return c;
}
function fillBody(tbody, rows, empty, cols) {
  tbody.replaceChildren();
  if (!rows.length) {
    tbody.append(el("tr", { class: "placeholder" }, el("td", { colspan: String(cols), text: empty })));
    return;
  }
  for (const r of rows) tbody.append(r);
}

/* ------------------------------------------------------------------- toasts */
function toast(msg, kind = "") {
  const t = el("div", { class: `toast ${kind}`, text: msg });
  $("#toasts").append(t);
  setTimeout(() => t.remove(), kind === "err" ? 9000 : 5000);
}

/* ---------------------------------------------------------------------- API */
class ApiError extends Error {
  constructor(status, detail) { super(detail); this.status = status; }
}
async function api(path, { method = "GET", body } = {}) {
  const headers = { Accept: "application/json" };
  if (state.token) headers.Authorization = `Bearer ${state.token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let res;
  try {
    res = await fetch(API + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (e) {
    throw new ApiError(0, "the control plane is not reachable");
  }
  const ct = res.headers.get("content-type") || "";
  const data = ct.includes("json") ? await res.json().catch(() => ({})) : await res.text();
  if (!res.ok) {
    const detail = (data && data.detail) || res.statusText || `HTTP ${res.status}`;
    if (res.status === 401 && method === "GET") openToken("This server needs the API token for every request.");
    throw new ApiError(res.status, detail);
  }
  return data;
}

/* An action: needs the token; asks for it when missing or refused. */
async function act(path, body, method = "POST") {
  if (!state.token && !(await askToken())) throw new ApiError(401, "no API token");
  try {
    return await api(path, { method, body });
  } catch (e) {
    if (e.status === 401 || e.status === 403) {
      setToken("");
      toast(`Token refused: ${e.message}`, "err");
      if (await askToken("The token was refused. Paste a valid one.")) return api(path, { method, body });
    }
    throw e;
  }
}

/* ------------------------------------------------------------- token dialog */
function setToken(t) {
  state.token = t;
  if (t) sessionStorage.setItem("mmats_token", t); else sessionStorage.removeItem("mmats_token");
  $("#token-btn").textContent = t ? "Token: set" : "Token: not set";
  $("#token-btn").classList.toggle("primary", !t);
}
let tokenResolve = null;
function openToken(note) {
  const d = $("#token-dialog");
  if (d.open) return;
  $("#token-input").value = "";
  d.returnValue = "";  // Escape keeps the last returnValue otherwise
  if (note) toast(note, "warn");
  d.showModal();
  $("#token-input").focus();
}
function askToken(note) {
  return new Promise((resolve) => { tokenResolve = resolve; openToken(note); });
}
function initToken() {
  setToken(state.token);
  $("#token-btn").addEventListener("click", () => openToken());
  // Enter in the field submits the form with its only submit button, Save; these two are plain buttons
  $("#token-clear").addEventListener("click", () => $("#token-dialog").close("clear"));
  $("#token-cancel").addEventListener("click", () => $("#token-dialog").close("cancel"));
  $("#token-dialog").addEventListener("close", () => {
    const d = $("#token-dialog");
    if (d.returnValue === "ok" && $("#token-input").value.trim()) {
      setToken($("#token-input").value.trim());
      toast("API token saved for this tab", "ok");
    } else if (d.returnValue === "clear") {
      setToken("");
    }
    $("#token-input").value = "";
    if (tokenResolve) { const r = tokenResolve; tokenResolve = null; r(!!state.token && d.returnValue === "ok"); }
  });
}

/* ----------------------------------------------------------- confirm dialog */
function confirmDialog({ title, body, ok = "Confirm", danger = true, extra }) {
  const d = $("#confirm-dialog");
  $("#confirm-title").textContent = title;
  const b = $("#confirm-body");
  b.replaceChildren();
  if (typeof body === "string") b.append(el("p", { text: body })); else if (body) b.append(body);
  if (extra) b.append(extra);
  $("#confirm-ok").textContent = ok;
  $("#confirm-ok").className = `btn ${danger ? "danger" : "primary"}`;
  d.classList.toggle("danger", danger);
  d.returnValue = "";
  return new Promise((resolve) => {
    d.addEventListener("close", () => resolve(d.returnValue === "ok"), { once: true });
    d.showModal();
    $("#confirm-cancel").focus();
  });
}

/* ----------------------------------------------------------------- header */
function renderStatus(s) {
  state.status = s;
  const env = s.environment || "PAPER";
  const envBadge = $("#env-badge");
  envBadge.textContent = env;
  envBadge.className = `badge env env-${env}`;
  $("#env-strip").className = `env-strip env-${env}`;
  const mode = s.mode || "advisory";
  $("#mode-badge").textContent = mode;
  $("#mode-badge").className = `badge mode mode-${mode}`;
  const ks = typeof s.kill_switch === "object" ? s.kill_switch.state : s.kill_switch;
  $("#kill-badge").textContent = `kill: ${ks}`;
  $("#kill-badge").className = `badge kill kill-${ks}`;
  $("#kill-badge").title = s.kill_reason ? `Kill switch: ${s.kill_reason}` : "Kill switch";
  const banner = $("#kill-banner");
  banner.classList.toggle("hidden", ks === "RUNNING");
  banner.className = `kill-banner kill-${ks}${ks === "RUNNING" ? " hidden" : ""}`;
  $("#kill-banner-text").textContent = ks === "RUNNING" ? "" :
    `Kill switch ${ks}${s.kill_reason ? ": " + s.kill_reason : ""}. ${ks === "SOFT" ? "Only exits pass." : "No order passes."}`;
  $("#bar-time").textContent = shortTime(s.bar_time || s.as_of);
  $("#wall-time").textContent = new Date().toISOString().slice(11, 19);
  if (s.uptime_s !== undefined) $("#uptime").textContent = dur(s.uptime_s);
  const eq = num(s.equity);
  $("#kpi-equity").textContent = money(eq);
  /* Cash in the base currency, then as held per currency when the account holds several (the stream carries them). */
  const held = s.cash_by_currency || {};
  const ccys = Object.keys(held);
  $("#kpi-cash").textContent = `cash ${money(s.cash)}${s.currency ? " " + s.currency : ""}` +
    (ccys.length > 1 ? ` (${ccys.map((c) => `${money(held[c])} ${c}`).join(", ")})` : "");
  const daily = $("#kpi-daily"); daily.textContent = signed(s.daily_pnl); daily.className = `num ${tone("pnl", s.daily_pnl)}`;
  const total = $("#kpi-total"); total.textContent = signed(s.total_pnl); total.className = `num ${tone("pnl", s.total_pnl)}`;
  const start = eq - num(s.total_pnl);
  const ret = start > 0 ? num(s.total_pnl) / start : null;
  const retEl = $("#kpi-total-pct");
  retEl.textContent = ret === null ? "" : `${signed(ret * 100)}%`;
  retEl.className = tone("total_return", ret);
  const dd = $("#kpi-dd"); dd.textContent = pct(Math.abs(num(s.drawdown)));
  dd.className = `num ${tone("max_drawdown", -Math.abs(num(s.drawdown)))}`;
  $("#kpi-positions").textContent = s.open_positions ?? "—";
  $("#kpi-orders").textContent = s.open_orders ?? "—";
  $("#kpi-activity").textContent = `${nf0.format(num(s.fills))} / ${nf0.format(num(s.signals))}`;
  if (Array.isArray(s.venues)) renderVenues(s.venues);
}
const BREAKER_KIND = { closed: "ok", half_open: "warn", open: "bad" };
function renderVenues(venues) {
  /* Only a LIVE system has venues (the full /status carries them; stream updates keep the last list). */
  $("#venues-panel").classList.toggle("hidden", venues.length === 0);
  fillBody($("#venues-body"), venues.map((v) => el("tr", {}, td(v.venue), td(tag(v.breaker, BREAKER_KIND[v.breaker] || "warn")),
    timeCell(v.last_reconcile, true), td(String(v.orders_unknown ?? 0), num(v.orders_unknown) ? "r neg" : "r"),
    td(v.last_error || "—", "wrap"))), "No venues", 5);
}

/* ----------------------------------------------------------------- charts */
const AXIS = { stroke: "#8696a8", grid: { stroke: "#1b2430", width: 1 }, ticks: { stroke: "#222c39", width: 1 },
  font: "11px system-ui, sans-serif" };
function axisNum(v) {
  const a = Math.abs(v);
  if (a >= 1e6) return (v / 1e6).toFixed(2) + "M";
  if (a >= 1000) return nf0.format(v);
  return a >= 1 ? v.toFixed(2) : v.toPrecision(3);
}
function chartSize(box) { return { width: Math.max(200, box.clientWidth), height: Math.max(120, box.clientHeight) }; }
function makeChart(id, series, data, extra = {}) {
  const box = document.getElementById(id);
  if (!box || !box.clientWidth) return null;
  if (state.charts[id]) { state.charts[id].destroy(); }
  box.replaceChildren();
  const opts = {
    ...chartSize(box),
    // One point (a fresh system) would make uPlot span years: keep a single point within an hour.
    scales: { x: { time: true, range: (u, lo, hi) => (lo != null && lo === hi ? [lo - 1800, hi + 1800] : [lo, hi]) } },
    tzDate: (ts) => uPlot.tzDate(new Date(ts * 1e3), "Etc/UTC"),  // every time on the page is UTC
    axes: [AXIS, { ...AXIS, size: 78, values: (u, ticks) => ticks.map(axisNum) }],
    series: [{}, ...series],
    legend: { show: false },
    cursor: { drag: { x: true, y: false } },
    ...extra,
  };
  state.charts[id] = new uPlot(opts, data, box);
  return state.charts[id];
}
function maxDrawdownHint() {
  const worst = state.equity.reduce((m, p) => Math.max(m, Math.abs(p.drawdown)), 0);
  $("#equity-hint").textContent = `max drawdown ${pct(worst)}`;
  $("#dd-hint").textContent = `max ${pct(worst)}`;
}
function equityChart() {
  const pts = state.equity;
  maxDrawdownHint();
  const data = [pts.map((p) => p.t), pts.map((p) => p.equity)];
  const c = state.charts["equity-chart"];
  if (c && c.series.length === 2) { c.setData(data); return; }
  makeChart("equity-chart", [{ label: "Equity", stroke: "#38bdf8", width: 1.6, fill: "rgba(56,189,248,0.10)" }], data);
}
function drawdownChart() {
  const pts = state.equity;
  maxDrawdownHint();
  const data = [pts.map((p) => p.t), pts.map((p) => -Math.abs(p.drawdown) * 100)];
  const c = state.charts["dd-chart"];
  if (c) { c.setData(data); return; }
  makeChart("dd-chart", [{ label: "Drawdown %", stroke: "#ef4444", width: 1.4, fill: "rgba(239,68,68,0.14)" }], data,
    { axes: [AXIS, { ...AXIS, size: 56, values: (u, t) => t.map((v) => v.toFixed(1) + "%") }] });
}
function resizeCharts() {
  for (const [id, c] of Object.entries(state.charts)) {
    const box = document.getElementById(id);
    if (box && box.clientWidth) c.setSize(chartSize(box));
  }
}

async function loadEquity() {
  try {
    const r = await api("/pnl/equity?points=1500");
    state.equity = r.points.map((p) => ({ t: p.t, equity: p.equity, drawdown: p.drawdown }));
    equityChart();
  } catch (e) { /* shown by the stream state */ }
}
function onEquity(ev) {
  if (ev.t === null || ev.t === undefined) return;
  const last = state.equity[state.equity.length - 1];
  const point = { t: ev.t, equity: ev.equity, drawdown: ev.drawdown };
  if (last && last.t === ev.t) state.equity[state.equity.length - 1] = point;
  else if (!last || ev.t > last.t) state.equity.push(point);
  if (state.equity.length > 4000) state.equity.splice(0, state.equity.length - 4000);
}

/* ------------------------------------------------------------------ stream */
async function stream() {
  for (;;) {
    try {
      const headers = { Accept: "text/event-stream" };
      if (state.token) headers.Authorization = `Bearer ${state.token}`;
      if (state.lastEventId) headers["Last-Event-ID"] = String(state.lastEventId);
      const res = await fetch(API + "/stream", { headers });
      if (!res.ok || !res.body) throw new Error(`stream HTTP ${res.status}`);
      setConn(true);
      const reader = res.body.getReader();
      const dec = new TextDecoder();
      let buf = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += dec.decode(value, { stream: true });
        let i;
        while ((i = buf.indexOf("\n\n")) >= 0) {
          const chunk = buf.slice(0, i); buf = buf.slice(i + 2);
          let event = "message", data = "", id = null;
          for (const line of chunk.split("\n")) {
            if (line.startsWith("event:")) event = line.slice(6).trim();
            else if (line.startsWith("data:")) data += line.slice(5).trim();
            else if (line.startsWith("id:")) id = line.slice(3).trim();
          }
          if (id) state.lastEventId = id;
          if (data) { try { dispatch(event, JSON.parse(data)); } catch (e) { /* a bad event is skipped */ } }
        }
      }
    } catch (e) { /* reconnect below */ }
    setConn(false);
    await new Promise((r) => setTimeout(r, 2000));
  }
}
function setConn(up) {
  state.connected = up;
  const c = $("#conn");
  c.className = `conn ${up ? "up" : "down"}`;
  c.textContent = up ? "live" : "reconnecting";
}
let dirty = {};
function dispatch(event, data) {
  switch (event) {
    case "status": renderStatus({ ...(state.status || {}), ...data }); break;
    case "equity": onEquity(data); dirty.equity = true; break;
    case "prices": if (state.tab === "markets") dirty.prices = data; break;
    case "signals": dirty.signals = true; break;
    case "orders": case "fills": dirty.orders = true; break;
    case "alerts": toast(`${data.kind}: ${data.message}`, data.level === "ERROR" ? "err" : "warn"); dirty.alerts = true; break;
    case "logs": addLog(data); break;
    default: break;
  }
}

/* ------------------------------------------------------------------- tabs */
function showTab(name) {
  state.tab = name;
  for (const t of $$(".tab")) t.classList.toggle("active", t.dataset.tab === name);
  for (const v of $$(".view")) v.classList.toggle("active", v.id === `tab-${name}`);
  history.replaceState(null, "", `#${name}`);
  requestAnimationFrame(() => { resizeCharts(); refresh(true); });
}

/* ---------------------------------------------------------------- overview */
const LIMIT_NAMES = {
  max_position_pct: "Position size", max_open_positions: "Open positions", max_leverage: "Leverage",
  max_gross_exposure: "Gross exposure", max_net_exposure_pct: "Net exposure", max_drawdown_pct: "Drawdown",
  max_daily_loss: "Daily loss", max_daily_loss_pct: "Daily loss", max_market_exposure_pct: "Market exposure",
  "kill_switch.max_drawdown_pct": "Kill switch: drawdown", "kill_switch.daily_loss_pct": "Kill switch: daily loss",
};
function limitName(it) {
  const scope = it.scope === "account" ? "" : ` · ${it.scope.replace(/^(symbol|market):/, "")}`;
  return (LIMIT_NAMES[it.limit] || it.limit.replace(/^max_/, "").replace(/_/g, " ")) + scope;
}
function utilBars(box, items, limit) {
  box.replaceChildren();
  const rows = [...items].sort((a, b) => b.utilization_pct - a.utilization_pct).slice(0, limit || items.length);
  if (!rows.length) { box.append(el("div", { class: "empty", text: "No limits configured" })); return; }
  for (const it of rows) {
    const p = Math.max(0, it.utilization_pct);
    const fill = el("div", { class: `bar-fill ${p >= 90 ? "bad" : p >= 70 ? "warn" : ""}` });
    fill.style.width = `${Math.min(100, p)}%`;
    const fmt = (v) => (it.limit.endsWith("_pct") || it.limit === "max_leverage" ? (it.limit === "max_leverage" ? v.toFixed(2) + "x" : pct(v)) : nf2.format(v));
    box.append(el("div", { class: "bar-row" },
      el("div", { class: "bar-label" }, el("span", { text: limitName(it), title: `${it.limit} (${it.level})` }),
        el("span", { text: `${fmt(it.current)} / ${fmt(it.limit_value)}  (${p.toFixed(1)}%)` })),
      el("div", { class: "bar-track" }, fill)));
  }
}
function positionRow(p, withClose) {
  const tr = el("tr", {},
    td(p.symbol), td(tag(p.side)), td(qty(p.quantity), "r"), td(price(p.avg_price), "r"), td(price(p.last_price), "r"),
    td(el("span", { class: tone("pnl", p.unrealized_pnl), text: signed(p.unrealized_pnl) }), "r"));
  if (withClose) {
    tr.append(td(el("button", { class: "btn ghost small", type: "button", text: "Close", onclick: () => closePosition(p) })));
  }
  return tr;
}
function signalRow(s, cols) {
  const decision = s.decision ? tag(s.decision) : el("span", { class: "muted", text: "—" });
  if (cols === "market") return el("tr", {}, timeCell(s.time), td(s.strategy_id), td(tag(s.action)), td(price(s.price), "r"), td(decision));
  return el("tr", {}, timeCell(s.time), td(s.strategy_id), td(s.symbol), td(tag(s.action)), td(s.position_size, "r"), td(decision));
}
async function refreshOverview() {
  const [pos, sig, util, pnl] = await Promise.all([api("/positions?limit=50"), api("/signals?limit=12"), api("/risk/utilization"),
    api("/pnl")]);
  fillBody($("#ov-strategy-pnl"), pnl.by_strategy.map((r) => el("tr", {}, td(r.name),
    td(el("span", { class: tone("pnl", r.realized_pnl), text: signed(r.realized_pnl) }), "r"), td(money(r.fees), "r"),
    td(el("span", { class: tone("pnl", r.net_pnl), text: signed(r.net_pnl) }), "r"))), "No trades yet", 4);
  fillBody($("#ov-positions"), pos.items.map((p) => positionRow(p, true)), "Flat: no open positions", 7);
  fillBody($("#ov-signals"), sig.items.map((s) => signalRow(s)), "No signals yet", 6);
  utilBars($("#overview-util"), util.items, 6);
  if (dirty.equity || !state.charts["equity-chart"]) { equityChart(); dirty.equity = false; }
}
async function closePosition(p) {
  const ok = await confirmDialog({ title: `Close ${p.symbol}?`, ok: "Close position",
    body: `Sends a CLOSE signal for ${p.symbol} (${p.side} ${qty(p.quantity)}) through the risk gatekeeper.` });
  if (!ok) return;
  try {
    const r = await act("/positions/close", { symbol: p.symbol, reason: "dashboard" });
    toast(`Close ${p.symbol}: ${r.status}${r.reasons.length ? " — " + r.reasons.join("; ") : ""}`, r.status === "submitted" ? "ok" : "warn");
  } catch (e) { toast(`Close failed: ${e.message}`, "err"); }
}

/* ----------------------------------------------------------------- markets */
/* Candles: two series (up and down) whose paths draw bodies and wicks from state.candles; their data
 * (highs, lows) gives the price axis its range. Volume: bars on their own scale in the bottom quarter. */
const UP = "#22c55e", DOWN = "#ef4444";
const OVERLAY_COLORS = ["#38bdf8", "#a78bfa", "#f472b6", "#fb923c", "#2dd4bf", "#facc15", "#e2e8f0"];
function candlePaths(up) {
  return (u, si, i0, i1) => {
    const k = state.candles, stroke = new Path2D(), fill = new Path2D();
    if (!k || !k.t.length) return { stroke, fill };
    const n = Math.max(1, i1 - i0 + 1);
    const w = Math.max(1, Math.min(14 * devicePixelRatio, (u.bbox.width / n) * 0.7));
    for (let i = i0; i <= i1; i++) {
      if ((k.c[i] >= k.o[i]) !== up) continue;
      const x = Math.round(u.valToPos(k.t[i], "x", true));
      const yo = u.valToPos(k.o[i], "y", true), yc = u.valToPos(k.c[i], "y", true);
      stroke.moveTo(x + 0.5, Math.round(u.valToPos(k.h[i], "y", true)));
      stroke.lineTo(x + 0.5, Math.round(u.valToPos(k.l[i], "y", true)));
      fill.rect(Math.round(x - w / 2), Math.min(yo, yc), Math.round(w), Math.max(1, Math.abs(yc - yo)));
    }
    return { stroke, fill };
  };
}
function volumePaths(u, si, i0, i1) {
  const k = state.candles, fill = new Path2D();
  if (!k) return { stroke: new Path2D(), fill };
  const n = Math.max(1, i1 - i0 + 1);
  const w = Math.max(1, Math.min(14 * devicePixelRatio, (u.bbox.width / n) * 0.7));
  const y0 = u.valToPos(0, "vol", true);
  for (let i = i0; i <= i1; i++) {
    const x = u.valToPos(k.t[i], "x", true), y = u.valToPos(k.v[i] || 0, "vol", true);
    fill.rect(Math.round(x - w / 2), y, Math.round(w), y0 - y);
  }
  return { stroke: new Path2D(), fill };
}
/* The running strategies' own indicators on this symbol (/indicators), aligned on the bars' times. */
function alignIndicators(ind, t) {
  const price = [], lower = [], notes = [];
  if (!ind) return { price, lower, notes };
  const at = new Map(ind.t.map((x, i) => [x, i]));
  let n = 0;
  for (const s of ind.strategies) {
    if (s.note) notes.push(`${s.id}: ${s.note}`);
    for (const se of s.series) {
      const values = t.map((x) => { const i = at.get(x); return i === undefined ? null : se.values[i]; });
      const item = { label: `${s.id} · ${se.name}${s.timeframe ? " (" + s.timeframe + ")" : ""}`, values,
        color: OVERLAY_COLORS[n++ % OVERLAY_COLORS.length], enabled: s.enabled };
      (se.pane === "price" ? price : lower).push(item);
    }
  }
  return { price, lower, notes };
}
function marketLegend(ov, held) {
  const box = $("#market-legend");
  const sw = (color, text, klass = "sw") => {
    const i = el("i", { class: klass });
    i.style.background = color;  // a CSSOM property, not a style attribute: the CSP allows it
    return [i, text];
  };
  const parts = [...sw(UP, "up candle", "sw box"), ...sw(DOWN, "down candle", "sw box"),
    ...sw("rgba(148,163,184,.45)", "volume", "sw box")];
  for (const o of [...ov.price, ...ov.lower]) parts.push(...sw(o.color, o.label + (o.enabled ? "" : " (disabled)")));
  if (held) parts.push(...sw("#f5b301", "entry"));
  parts.push(...sw("#22c55e", "buy", "dot"), ...sw("#ef4444", "sell", "dot"), ...sw("#94a3b8", "close", "dot"));
  box.replaceChildren(...parts);
  $("#market-notes").textContent = ov.notes.join(" · ");
}
async function loadMarkets() {
  state.markets = await api("/markets");
  const have = new Set(state.markets.map((m) => m.market));
  for (const b of $$("#market-seg button")) b.disabled = !have.has(b.dataset.market);
  if (!have.has(state.market) && state.markets.length) state.market = state.markets[0].market;
  for (const b of $$("#market-seg button")) b.classList.toggle("active", b.dataset.market === state.market);
  const symbols = state.markets.filter((m) => m.market === state.market).flatMap((m) => m.symbols);
  const sel = $("#symbol-select");
  const all = state.markets.flatMap((m) => m.symbols);
  if (!symbols.includes(state.symbol)) state.symbol = symbols[0] || null;
  sel.replaceChildren(...symbols.map((s) => el("option", { value: s, text: s })));
  if (state.symbol) sel.value = state.symbol;
  const os = $("#order-symbol");
  if (os.options.length !== all.length) os.replaceChildren(...all.map((s) => el("option", { value: s, text: s })));
}
async function refreshMarkets() {
  if (!state.markets.length) await loadMarkets();
  $("#market-empty").classList.toggle("hidden", !!state.symbol);
  $("#price-chart").classList.toggle("hidden", !state.symbol);
  if (!state.symbol) { $("#osc-chart").classList.add("hidden"); return; }
  const sym = state.symbol, q = encodeURIComponent(sym);
  const [bars, sig, pos, ind] = await Promise.all([
    api(`/bars?symbol=${q}&limit=300`),
    api(`/signals?symbol=${q}&limit=200`),
    api(`/positions?market=${state.market}`),
    api(`/indicators?symbol=${q}&limit=300`).catch(() => null),
  ]);
  const B = bars.bars;
  const t = B.map((b) => b.t), close = B.map((b) => b.close);
  state.candles = { t, o: B.map((b) => b.open), h: B.map((b) => b.high), l: B.map((b) => b.low), c: close,
    v: B.map((b) => b.volume) };
  const index = new Map(t.map((x, i) => [x, i]));
  const buy = new Array(t.length).fill(null), sell = new Array(t.length).fill(null), flat = new Array(t.length).fill(null);
  for (const s of sig.items) {
    const i = index.get(Date.parse(s.time) / 1000);
    if (i === undefined) continue;
    (s.action === "BUY" ? buy : s.action === "SELL" ? sell : flat)[i] = s.price ?? close[i];
  }
  const held = pos.items.find((p) => p.symbol === sym && p.side !== "FLAT");
  const avg = new Array(t.length).fill(held ? num(held.avg_price) : null);
  const ov = alignIndicators(ind, t);
  const pts = (fill) => ({ show: true, size: 9, fill, stroke: "#0b0f14", width: 1 });
  const none = { show: false };
  const series = [
    { label: "Up", stroke: UP, fill: UP, width: 1, paths: candlePaths(true), points: none },
    { label: "Down", stroke: DOWN, fill: DOWN, width: 1, paths: candlePaths(false), points: none },
    { label: "Volume", scale: "vol", stroke: "transparent", fill: "rgba(148,163,184,0.28)", paths: volumePaths, points: none },
    ...ov.price.map((o) => ({ label: o.label, stroke: o.color, width: 1.3, points: none, spanGaps: true })),
    { label: "Entry", stroke: "#f5b301", width: 1, dash: [6, 4], points: none },
    { label: "Buy", stroke: "#22c55e", paths: () => null, points: pts("#22c55e") },
    { label: "Sell", stroke: "#ef4444", paths: () => null, points: pts("#ef4444") },
    { label: "Close signal", stroke: "#94a3b8", paths: () => null, points: pts("#94a3b8") },
  ];
  const data = [t, state.candles.h, state.candles.l, state.candles.v, ...ov.price.map((o) => o.values), avg, buy, sell, flat];
  const shape = `${sym}|${series.map((x) => x.label).join(",")}`;
  const c = state.charts["price-chart"];
  if (c && state.priceChartShape === shape) c.setData(data);
  else {
    makeChart("price-chart", series, data, {
      scales: { x: { time: true }, vol: { range: (u, lo, hi) => [0, Math.max(1e-9, hi) * 4] } },
      cursor: { drag: { x: true, y: false }, sync: { key: "markets" } },
    });
    state.priceChartShape = shape;
  }
  const osc = $("#osc-chart");
  osc.classList.toggle("hidden", !ov.lower.length);
  if (ov.lower.length) {
    const odata = [t, ...ov.lower.map((o) => o.values)];
    const oc = state.charts["osc-chart"];
    const oshape = `${sym}|${ov.lower.map((o) => o.label).join(",")}`;
    if (oc && state.oscChartShape === oshape) oc.setData(odata);
    else {
      makeChart("osc-chart", ov.lower.map((o) => ({ label: o.label, stroke: o.color, width: 1.3, points: none, spanGaps: true })),
        odata, { cursor: { drag: { x: true, y: false }, sync: { key: "markets" } } });
      state.oscChartShape = oshape;
    }
  }
  marketLegend(ov, held);
  $("#market-last").textContent = close.length ? `${sym}  ${price(close[close.length - 1])}` : sym;
  fillBody($("#mk-positions"), pos.items.map((p) => positionRow(p, false)), "No positions in this market", 6);
  fillBody($("#mk-signals"), sig.items.slice(0, 12).map((s) => signalRow(s, "market")), "No signals on this symbol", 5);
}

/* -------------------------------------------------------------- strategies */
async function refreshStrategies() {
  const r = await api("/strategies?limit=200");
  const rows = r.items.map((s) => {
    const sw = el("input", { type: "checkbox", "data-strategy": s.id, "aria-label": `enable ${s.id}` });
    sw.checked = !!s.enabled;
    sw.addEventListener("change", () => toggleStrategy(s, sw));
    const health = !s.enabled ? tag("disabled", "CLOSE") : s.healthy ? tag("healthy", "ok") : tag("errors", "bad");
    const err = s.last_error ? el("span", { class: "info-dot", title: `last error: ${s.last_error}`, text: "i",
      "aria-label": `last error: ${s.last_error}` }) : null;
    return el("tr", { "data-row": s.id },
      td(el("label", { class: "switch" }, sw, el("span"))),
      td(el("b", { text: s.id })), td(s.ref, "id"), td(`v${s.version}`), td(s.symbols.join(", ")), td(health),
      td(el("span", { class: tone("pnl", s.net_pnl), text: signed(s.net_pnl) }), "r"),
      td(s.win_rate === null ? "—" : pct(s.win_rate, 1), "r"), td(s.trades, "r"), td(s.signals, "r"),
      td(el("span", {}, String(s.errors_total), err), "r"),
      td(el("button", { class: "btn ghost small", type: "button", text: "Params…", onclick: () => editParams(s) })));
  });
  fillBody($("#strategies-body"), rows, "No strategies", 12);
}
async function toggleStrategy(s, sw) {
  const enable = sw.checked;
  sw.checked = !enable; // stays as it was until the server agrees
  let ok, closeBox = null;
  if (enable) {
    ok = await confirmDialog({ title: `Enable ${s.id}?`, ok: "Enable", danger: false,
      body: `${s.id} starts acting on the next bar.` });
  } else {
    closeBox = el("input", { type: "checkbox", id: "close-positions" });
    ok = await confirmDialog({ title: `Disable ${s.id}?`, ok: "Disable",
      body: `${s.id} stops emitting signals at once.`,
      extra: el("label", { class: "check" }, closeBox, "also close the positions in its symbols") });
  }
  if (!ok) return;
  try {
    if (enable) await act(`/strategies/${encodeURIComponent(s.id)}/enable`);
    else await act(`/strategies/${encodeURIComponent(s.id)}/disable`, { close_positions: !!(closeBox && closeBox.checked), reason: "dashboard" });
    sw.checked = enable;
    toast(`${s.id} ${enable ? "enabled" : "disabled"}`, "ok");
  } catch (e) { toast(`${s.id}: ${e.message}`, "err"); }
  refresh(true);
}
async function editParams(s) {
  const input = el("input", { type: "text", value: JSON.stringify(s.params) });
  const ok = await confirmDialog({ title: `Parameters of ${s.id}`, ok: "Apply as new version", danger: false,
    body: el("p", { text: `A new version (v${s.version + 1}) replaces the running actor; it warms up from the feed's history.` }),
    extra: input });
  if (!ok) return;
  let params;
  try { params = JSON.parse(input.value); } catch (e) { toast("Parameters must be a JSON object", "err"); return; }
  try {
    const r = await act(`/strategies/${encodeURIComponent(s.id)}/params`, { params }, "PUT");
    toast(`${s.id} is now v${r.version}`, "ok");
  } catch (e) { toast(`${s.id}: ${e.message}`, "err"); }
  refresh(true);
}
function initSubmit() {
  $("#submit-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const f = new FormData(ev.target);
    let params;
    try { params = JSON.parse(f.get("params") || "{}"); } catch (e) { toast("Params must be JSON", "err"); return; }
    const body = { id: f.get("id"), ref: f.get("ref"), market: f.get("market"), params,
      symbols: String(f.get("symbols")).split(",").map((x) => x.trim()).filter(Boolean) };
    try {
      const r = await act("/strategies", body);
      toast(`Strategy ${r.id} started`, "ok");
      ev.target.reset();
    } catch (e) { toast(`Submit failed: ${e.message}`, "err"); }
    refresh(true);
  });
}

/* -------------------------------------------------------------------- risk */
function hbars(box, title, items) {
  box.append(el("h4", { text: title }));
  const max = Math.max(1e-9, ...items.map((x) => Math.abs(x.notional)));
  if (!items.length) box.append(el("div", { class: "muted", text: "no exposure" }));
  for (const x of items) {
    const fill = el("div", { class: `fill ${x.notional < 0 ? "short" : ""}` });
    fill.style.width = `${(100 * Math.abs(x.notional)) / max}%`;
    box.append(el("div", { class: "hbar" }, el("span", { text: x.name }), el("div", { class: "track" }, fill),
      el("span", { class: "val", text: `${money(x.notional)} · ${pct(x.pct_of_equity, 1)}` })));
  }
}
async function refreshRisk() {
  const [util, limits, alerts, kill] = await Promise.all([api("/risk/utilization"), api("/risk/limits"),
    api("/risk/alerts?limit=100"), api("/kill-switch")]);
  utilBars($("#risk-util"), util.items);
  $("#limits-source").textContent = `${limits.source === "minimal" ? "minimal gate" : "risk config"}${limits.profile ? " · " + limits.profile : ""} · ${limits.environment}`;
  const ex = $("#exposure"); ex.replaceChildren();
  hbars(ex, "By symbol", util.by_symbol);
  hbars(ex, "By market", util.by_market);
  $("#exposure-hint").textContent = `gross ${money(util.gross_exposure)} · net ${money(util.net_exposure)}`;
  fillBody($("#alerts-body"), alerts.items.map((a) => el("tr", {}, timeCell(a.time, true), td(tag(a.level)), td(a.kind), td(a.message, "wrap"))),
    "No alerts", 4);
  $("#kill-detail").textContent = `${kill.state}${kill.reason ? " — " + kill.reason : ""}${kill.since ? " since " + shortTime(kill.since) + " (wall clock)" : ""}`;
  if (dirty.equity || !state.charts["dd-chart"]) { drawdownChart(); }
}
async function setKill(stateName, reason) {
  const words = { SOFT: "no new entries (exits still allowed)", HARD: "cancel every order and flatten every position NOW",
    FREEZE: "stop everything: no orders at all, open orders canceled", RUNNING: "reset: trading resumes" };
  const ok = await confirmDialog({ title: stateName === "RUNNING" ? "Reset the kill switch?" : `Kill switch ${stateName}?`,
    body: `${words[stateName]}. Reason: ${reason}`, ok: stateName === "RUNNING" ? "Reset" : `Set ${stateName}`,
    danger: stateName !== "RUNNING" });
  if (!ok) return false;
  try {
    const r = await act("/kill-switch", { state: stateName, reason });
    toast(`Kill switch ${r.kill_switch.state} (${r.elapsed_ms} ms)`, stateName === "RUNNING" ? "ok" : "warn");
    return true;
  } catch (e) { toast(`Kill switch: ${e.message}`, "err"); return false; } finally { refresh(true); }
}
function initRisk() {
  for (const b of $$("[data-kill]")) {
    b.addEventListener("click", () => {
      const reason = $("#kill-reason").value.trim();
      if (!reason) { toast("Give a reason first", "warn"); $("#kill-reason").focus(); return; }
      setKill(b.dataset.kill, reason);
    });
  }
  $("#mode-advisory").addEventListener("click", async () => {
    if (!(await confirmDialog({ title: "Switch to advisory?", body: "Signals and risk decisions are recorded; no order is sent.", ok: "Switch", danger: false }))) return;
    try { await act("/mode", { mode: "advisory", reason: "dashboard" }); toast("Advisory mode", "ok"); } catch (e) { toast(e.message, "err"); }
  });
  $("#mode-operator").addEventListener("click", async () => {
    try {
      const step = await act("/mode", { mode: "operator" });
      const ok = await confirmDialog({ title: "Switch to OPERATOR?", ok: "Confirm: send real orders",
        body: `In operator mode approved signals become orders in the ${step.environment} environment. Confirm within ${Math.round(step.expires_in_s)} s.` });
      if (!ok) return;
      await act("/mode", { mode: "operator", confirm_token: step.confirm_token });
      toast("Operator mode", "warn");
    } catch (e) { toast(e.message, "err"); }
  });
}

/* ------------------------------------------------------------ emergency stop */
async function emergencyStop() {
  if ($("#confirm-dialog").open) return;
  const reason = el("input", { type: "text", value: "emergency stop from the dashboard", id: "estop-reason" });
  const ok = await confirmDialog({ title: "EMERGENCY STOP", ok: "STOP — flatten everything",
    body: el("p", { text: "Sets the kill switch to HARD: every open order is canceled and every position is closed at once; no new order passes until someone resets it." }),
    extra: el("label", {}, "Reason", reason) });
  if (!ok) return;
  try {
    const r = await act("/kill-switch", { state: "HARD", reason: reason.value.trim() || "emergency stop" });
    const f = r.flatten || {};
    toast(`HARD stop in ${r.elapsed_ms} ms: ${f.canceled ?? 0} orders canceled, ${f.flatten_fills ?? 0} flatten fills`, "warn");
  } catch (e) { toast(`Emergency stop FAILED: ${e.message}`, "err"); }
  refresh(true);
}

/* ------------------------------------------------------------------ orders */
function orderRow(o, open) {
  const cells = [timeCell(o.created), td(o.client_order_id, "id"), td(o.strategy_id), td(o.symbol), td(tag(o.side)), td(o.type),
    td(qty(o.quantity), "r")];
  if (open) {
    cells.push(td(o.price ? price(o.price) : o.stop_price ? `stop ${price(o.stop_price)}` : "mkt", "r"), td(tag(o.status)),
      td(el("button", { class: "btn ghost small", type: "button", text: "Cancel", onclick: () => cancelOrder(o) })));
  } else {
    cells.push(td(qty(o.filled_quantity), "r"), td(o.avg_fill_price ? price(o.avg_fill_price) : "—", "r"), td(tag(o.status)),
      td(o.reject_reason || "", "wrap"));
  }
  return el("tr", {}, ...cells);
}
async function refreshOrders() {
  const f = new FormData($("#order-filters"));
  const q = new URLSearchParams({ offset: state.histOffset, limit: state.histLimit });
  for (const k of ["status", "symbol", "strategy"]) if (f.get(k)) q.set(k, f.get(k));
  if (f.get("since")) q.set("since", new Date(f.get("since") + "Z").toISOString());
  const [open, hist] = await Promise.all([api("/orders/open?limit=200"), api(`/orders?${q}`)]);
  fillBody($("#open-orders"), open.items.map((o) => orderRow(o, true)), "No open orders", 10);
  fillBody($("#order-history"), hist.items.map((o) => orderRow(o, false)), "No orders match", 11);
  const last = Math.min(hist.total, state.histOffset + hist.items.length);
  $("#hist-page").textContent = hist.total ? `${state.histOffset + 1}–${last} of ${hist.total}` : "";
  $("#hist-prev").disabled = state.histOffset === 0;
  $("#hist-next").disabled = hist.next_offset === null;
  if (!$("#order-symbol").options.length) await loadMarkets();
}
async function cancelOrder(o) {
  if (!(await confirmDialog({ title: "Cancel order?", body: `${o.side} ${qty(o.quantity)} ${o.symbol} (${o.client_order_id})`, ok: "Cancel order" }))) return;
  try { await act(`/orders/${encodeURIComponent(o.client_order_id)}`, undefined, "DELETE"); toast("Order canceled", "ok"); }
  catch (e) { toast(`Cancel failed: ${e.message}`, "err"); }
  refresh(true);
}
function initOrders() {
  $("#order-filters").addEventListener("submit", (ev) => { ev.preventDefault(); state.histOffset = 0; refresh(true); });
  $("#hist-prev").addEventListener("click", () => { state.histOffset = Math.max(0, state.histOffset - state.histLimit); refresh(true); });
  $("#hist-next").addEventListener("click", () => { state.histOffset += state.histLimit; refresh(true); });
  $("#cancel-all").addEventListener("click", async () => {
    const n = num(state.status && state.status.open_orders);
    if (!(await confirmDialog({ title: "Cancel all open orders?", body: `${n} open order(s) will be canceled.`, ok: "Cancel all" }))) return;
    try { const r = await act("/orders/cancel", { all: true }); toast(`${r.count} order(s) canceled`, "ok"); }
    catch (e) { toast(`Bulk cancel failed: ${e.message}`, "err"); }
    refresh(true);
  });
  for (const b of $$("#order-side button")) {
    b.addEventListener("click", () => {
      state.side = b.dataset.side;
      for (const x of $$("#order-side button")) x.classList.toggle("active", x === b);
    });
  }
  $("#order-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const f = new FormData(ev.target);
    const body = { symbol: f.get("symbol"), side: state.side, target_exposure: num(f.get("target_exposure")),
      order_type: f.get("order_type"), strategy_id: f.get("strategy_id") || "manual", reasoning: f.get("reasoning") || "manual order" };
    if (body.order_type === "LIMIT") body.limit_price = num(f.get("limit_price"));
    const dl = el("dl", {}, el("dt", { text: "Symbol" }), el("dd", { text: body.symbol }), el("dt", { text: "Side" }), el("dd", { text: body.side }),
      el("dt", { text: "Target exposure" }), el("dd", { text: pct(body.target_exposure, 1) + " of allocation" }),
      el("dt", { text: "Type" }), el("dd", { text: body.order_type + (body.limit_price ? ` @ ${body.limit_price}` : "") }),
      el("dt", { text: "As strategy" }), el("dd", { text: body.strategy_id }),
      el("dt", { text: "Mode" }), el("dd", { text: state.status ? state.status.mode : "?" }));
    if (!(await confirmDialog({ title: "Send this order?", body: dl, ok: "Send through the gatekeeper", danger: false }))) return;
    try {
      const r = await act("/orders", body);
      toast(`Order ${r.status}${r.reasons.length ? ": " + r.reasons.join("; ") : ""}`, r.status === "submitted" ? "ok" : "warn");
    } catch (e) { toast(`Order failed: ${e.message}`, "err"); }
    refresh(true);
  });
}

/* ------------------------------------------------------------ logs & audit */
function logFilters() {
  const f = new FormData($("#log-filters"));
  return { level: f.get("level"), module: String(f.get("module") || "").trim(), market: f.get("market") };
}
const LEVELS = ["DEBUG", "INFO", "WARNING", "ERROR"];
function logMatches(r, f) {
  if (f.level && LEVELS.indexOf(r.level) < LEVELS.indexOf(f.level)) return false;
  if (f.module && !(r.module === f.module || r.module.startsWith(f.module))) return false;
  if (f.market && r.market !== f.market) return false;
  return true;
}
function logLine(r) {
  return el("div", { class: "logline" }, el("span", { class: "t", text: shortTime(r.time).slice(11, 19) + " " }),
    el("span", { class: `lv ${r.level}`, text: r.level }), el("span", { class: "mod", text: r.module }),
    r.market ? el("span", { class: "mk", text: ` [${r.market}]` }) : null, " ", r.message);
}
function addLog(r) {
  if (r.seq && r.seq <= state.logSeq) return;
  state.logSeq = r.seq || state.logSeq;
  state.logs.push(r);
  if (state.logs.length > 2000) state.logs.shift();
  if (state.tab === "logs" && logMatches(r, logFilters())) {
    const view = $("#log-view");
    view.append(logLine(r));
    while (view.childElementCount > 800) view.firstElementChild.remove();
    if ($("#log-follow").checked) view.scrollTop = view.scrollHeight;
  }
}
function renderLogs() {
  const f = logFilters();
  const view = $("#log-view");
  view.replaceChildren(...state.logs.filter((r) => logMatches(r, f)).slice(-800).map(logLine));
  if ($("#log-follow").checked) view.scrollTop = view.scrollHeight;
}
async function loadLogs() {
  const r = await api("/logs?limit=1000");
  for (const x of r.items.reverse()) addLog(x);
}
async function refreshLogs(full) {
  const [journal, audit] = await Promise.all([api("/signals?limit=60"), api("/audit?limit=15").catch(() => null)]);
  fillBody($("#journal"), journal.items.map((s) => el("tr", {}, timeCell(s.time, true), td(s.strategy_id), td(s.symbol), td(tag(s.action)),
    td(s.position_size, "r"), td(num(s.confidence).toFixed(2), "r"), td(price(s.price), "r"), td(s.reasoning, "wrap"),
    td(s.decision ? el("span", { title: s.decision_reasons.join("; ") }, tag(s.decision)) : "—"))), "No signals yet", 9);
  if (audit) {
    fillBody($("#audit-body"), audit.items.reverse().map((a) => el("tr", {}, td(a.seq, "r"), td(a.kind), td(hhmm(a.time)),
      td(a.hash.slice(0, 12) + "…", "id"))), "Empty journal", 4);
  } else {
    fillBody($("#audit-body"), [], "No audit journal (persistence is off)", 4);
  }
  if (full) renderLogs();
}
function initLogs() {
  $("#log-filters").addEventListener("input", renderLogs);
  $("#log-filters").addEventListener("submit", (e) => e.preventDefault());
  $("#audit-verify").addEventListener("click", async () => {
    const box = $("#audit-result");
    box.className = "audit-result"; box.textContent = "verifying…";
    try {
      const v = await api("/audit/verify");
      box.className = `audit-result ${v.ok ? "ok" : "bad"}`;
      box.textContent = v.ok ? `✓ chain intact: ${nf0.format(v.records)} records, head ${v.head_hash.slice(0, 16)}…`
        : `✗ chain broken at seq ${v.first_bad_seq}: ${v.problem}`;
    } catch (e) { box.className = "audit-result bad"; box.textContent = e.message; }
  });
}

/* ------------------------------------------------------------------ config */
async function refreshConfig() {
  const [cfg, hist] = await Promise.all([api("/config"), api("/config/history?limit=50")]);
  $("#config-view").textContent = JSON.stringify(cfg.config, null, 2);
  $("#config-version").textContent = `${cfg.version ? "version " + cfg.version : "not a stored version"}${cfg.restart_required.length ? " · restart needed for: " + cfg.restart_required.join(", ") : ""}`;
  fillBody($("#config-history"), hist.items.map((v) => el("tr", {}, td(v.version, "r"), td(hhmm(v.time)), td(v.author),
    td(v.comment || v.changes.join("; ") || "—", "wrap"),
    td(el("button", { class: "btn ghost small", type: "button", text: "Roll back", onclick: () => rollback(v) })))), "No versions", 5);
}
async function rollback(v) {
  if (!(await confirmDialog({ title: `Roll back to version ${v.version}?`, body: "Saved as a new version; strategy changes apply at once, other fields on restart.", ok: "Roll back" }))) return;
  try { const r = await act("/config/rollback", { version: v.version, author: "dashboard" }); toast(`Config version ${r.version}`, "ok"); }
  catch (e) { toast(`Rollback failed: ${e.message}`, "err"); }
  refresh(true);
}

/* ----------------------------------------------------------------- refresh */
let lastFull = 0;
async function refresh(force = false) {
  if (state.refreshing && !force) return;
  state.refreshing = true;
  try {
    if (!state.connected || force || Date.now() - lastFull > 5000) {
      const s = await api("/status");
      renderStatus({ ...s, kill_reason: s.kill_switch.reason });
      lastFull = Date.now();
    }
    switch (state.tab) {
      case "overview": await refreshOverview(); break;
      case "markets": await refreshMarkets(); break;
      case "strategies": await refreshStrategies(); break;
      case "risk": await refreshRisk(); dirty.equity = false; break;
      case "orders": await refreshOrders(); break;
      case "logs": await refreshLogs(force); break;
      case "config": if (force) await refreshConfig(); break;
      default: break;
    }
  } catch (e) {
    if (e.status !== 401) setConnHint(e.message);
  } finally { state.refreshing = false; }
}
function setConnHint(msg) { $("#conn").title = msg; }

/* -------------------------------------------------------------------- boot */
function init() {
  initToken();
  initSubmit();
  initRisk();
  initOrders();
  initLogs();
  for (const t of $$(".tab")) t.addEventListener("click", () => showTab(t.dataset.tab));
  for (const a of $$("[data-goto]")) a.addEventListener("click", () => showTab(a.dataset.goto));
  for (const b of $$("#market-seg button")) {
    b.addEventListener("click", () => { if (b.disabled) return; state.market = b.dataset.market; state.symbol = null; loadMarkets().then(() => refresh(true)); });
  }
  $("#symbol-select").addEventListener("change", (e) => { state.symbol = e.target.value; refresh(true); });
  $("#estop").addEventListener("click", emergencyStop);
  $("#kill-banner-reset").addEventListener("click", () => showTab("risk"));
  document.addEventListener("keydown", (e) => {
    if (e.ctrlKey && e.shiftKey && (e.key === "X" || e.key === "x")) { e.preventDefault(); emergencyStop(); }
  });
  window.addEventListener("resize", () => { clearTimeout(state.resizeTimer); state.resizeTimer = setTimeout(resizeCharts, 150); });
  const initial = (location.hash || "#overview").slice(1);
  // the tab is shown at once: a click made while the first loads are in flight must not be undone by them
  showTab($(`#tab-${initial}`) ? initial : "overview");
  Promise.all([loadEquity(), loadMarkets().catch(() => null), loadLogs().catch(() => null)]).finally(() => refresh(true));
  stream();
  setInterval(() => { refresh(false); }, 1000);
  setInterval(() => { if (dirty.equity && state.tab === "overview") { equityChart(); dirty.equity = false; } }, 1000);
}
document.addEventListener("DOMContentLoaded", init);
