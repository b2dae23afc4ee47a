// Shared helpers of the console pages: session, CSRF, zh-CN formatting,
// small SVG charts. No framework, no build step.
"use strict";

const Console = (() => {
  const nf = new Intl.NumberFormat("zh-CN");
  const pf = new Intl.NumberFormat("zh-CN", { style: "percent", maximumFractionDigits: 0 });
  let session = null;

  const STATE = {
    available: "空闲", on_call: "通话中", ringing: "振铃中", paused: "暂停",
    wrap_up: "话后处理", logged_out: "未签入",
  };
  const END = {
    goodbye: "正常结束", caller_hangup: "主叫挂机", transfer: "转人工", rtp_timeout: "媒体超时",
    error: "错误", shutdown: "停机", agent_hangup: "坐席挂机", transferred: "已转接",
  };
  const FUNNEL = [
    ["answered", "接通"], ["menu", "进入菜单"], ["id_entered", "输入身份证号"],
    ["verified", "验证通过"], ["balance_heard", "收听余额"], ["asked_agent", "转人工"],
    ["gave_up", "放弃"],
  ];
  const DTMF = [["rfc4733", "RFC 4733"], ["info", "SIP INFO"], ["inband", "带内音频"]];
  const INSURANCE = {
    pension: "养老保险", medical: "医疗保险", unemployment: "失业保险",
    work_injury: "工伤保险", maternity: "生育保险",
  };
  const AUTH = {
    verified: "已验证", locked: "账户已锁定", rejected: "验证失败",
    not_identified: "未输入身份信息", unknown: "未知",
  };

  function num(n) { return nf.format(n || 0); }
  function pct(x) { return x == null ? "—" : pf.format(x); }
  function time(ms) {
    return new Date(ms).toLocaleString("zh-CN", { hour12: false });
  }
  function hm(secs) {
    return new Date(secs * 1000).toLocaleTimeString("zh-CN", { hour: "2-digit", minute: "2-digit", hour12: false });
  }
  function dur(secs) {
    secs = Math.max(0, Math.floor(secs || 0));
    const h = Math.floor(secs / 3600), m = Math.floor((secs % 3600) / 60), s = secs % 60;
    if (h) return `${num(h)}小时${m}分`;
    if (m) return `${m}分${String(s).padStart(2, "0")}秒`;
    return `${s}秒`;
  }
  function text(id, v) { const e = document.getElementById(id); if (e) e.textContent = v; }
  function el(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") e.className = v; else e.setAttribute(k, v);
    }
    for (const k of kids) e.append(k instanceof Node ? k : document.createTextNode(String(k)));
    return e;
  }

  async function loadSession(role) {
    const r = await fetch("/session", { credentials: "same-origin" });
    if (r.status === 401) { location.href = "/login"; return null; }
    session = await r.json();
    if (role && session.role !== role) {
      location.href = session.role === "agent" ? "/agent" : "/";
      return null;
    }
    text("who", `${session.user}（${session.role === "agent" ? "坐席" : "班长"}）`);
    const out = document.getElementById("signout");
    if (out) out.addEventListener("click", signOut);
    return session;
  }

  async function post(path, body) {
    const r = await fetch(path, {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": session ? session.csrf || "" : "" },
      body: body ? JSON.stringify(body) : "",
    });
    let data = null;
    try { data = await r.json(); } catch (_) { /* empty */ }
    return { ok: r.ok, status: r.status, data };
  }

  async function signOut() {
    await post("/logout");
    location.href = "/login";
  }

  const SVGNS = "http://www.w3.org/2000/svg";
  function svgEl(tag, attrs, txt) {
    const e = document.createElementNS(SVGNS, tag);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
    if (txt != null) e.textContent = txt;
    return e;
  }

  // Vertical bars: items [{label, value, value2?}], one label every `every` bars.
  function bars(svg, items, opts) {
    opts = opts || {};
    const W = 420, H = 180, L = 30, B = 22, T = 8;
    svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
    svg.replaceChildren();
    const max = Math.max(1, ...items.map(i => Math.max(i.value || 0, i.value2 || 0)));
    const n = Math.max(1, items.length), bw = (W - L - 4) / n;
    svg.append(svgEl("line", { x1: L, y1: H - B, x2: W, y2: H - B, class: "axis" }));
    svg.append(svgEl("text", { x: 2, y: T + 8 }, num(max)));
    svg.append(svgEl("text", { x: 2, y: H - B }, "0"));
    items.forEach((it, i) => {
      const h = (H - B - T) * (it.value || 0) / max;
      const x = L + i * bw;
      const w2 = it.value2 != null ? bw * 0.45 : bw * 0.8;
      svg.append(svgEl("rect", { x: x + bw * 0.1, y: H - B - h, width: w2, height: h, class: "bar" },));
      if (it.value2 != null) {
        const h2 = (H - B - T) * (it.value2 || 0) / max;
        svg.append(svgEl("rect", { x: x + bw * 0.55, y: H - B - h2, width: bw * 0.35, height: h2, class: "bar2" }));
      }
      if (!opts.every || i % opts.every === 0) {
        svg.append(svgEl("text", { x: x + bw * 0.1, y: H - 6 }, it.label));
      }
      if (opts.values) {
        svg.append(svgEl("text", { x: x + bw * 0.1, y: Math.max(T + 10, H - B - h - 3) }, num(it.value)));
      }
    });
    svg.setAttribute("aria-label", (opts.title || "") + "：" +
      items.map(i => `${i.label} ${num(i.value)}` + (i.value2 != null ? `/${num(i.value2)}` : "")).join("，"));
  }

  // Horizontal bars (funnel, end reasons, DTMF).
  function hbars(svg, items, title) {
    const W = 420, rowH = 24, L = 96;
    const H = Math.max(40, items.length * rowH + 8);
    svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
    svg.style.height = `${H}px`;
    svg.replaceChildren();
    const max = Math.max(1, ...items.map(i => i.value || 0));
    items.forEach((it, i) => {
      const y = 4 + i * rowH, w = (W - L - 50) * (it.value || 0) / max;
      svg.append(svgEl("text", { x: 2, y: y + 15 }, it.label));
      svg.append(svgEl("rect", { x: L, y: y + 3, width: w, height: rowH - 8, class: "bar" }));
      svg.append(svgEl("text", { x: L + w + 6, y: y + 15 }, num(it.value)));
    });
    svg.setAttribute("aria-label", `${title}：` + items.map(i => `${i.label} ${num(i.value)}`).join("，"));
  }

  return { num, pct, time, hm, dur, text, el, loadSession, post, bars, hbars, STATE, END, FUNNEL, DTMF, INSURANCE, AUTH };
})();
