"use strict";
(async () => {
  const C = Console;
  if (!await C.loadSession("supervisor")) return;

  function render(d) {
    C.text("kpi-self-service", C.num(d.calls.self_service));
    C.text("kpi-waiting", C.num(d.calls.waiting));
    C.text("kpi-talking", C.num(d.calls.talking));
    C.text("kpi-offered", C.num(d.calls.offered_last_hour));
    C.text("updated", "更新于 " + C.time(d.at * 1000));
    const qb = document.getElementById("queues");
    qb.replaceChildren(...d.queues.map(q => C.el("tr", {},
      C.el("th", { scope: "row" }, q.name), C.el("td", { class: "num" }, C.num(q.waiting)),
      C.el("td", { class: "num" }, C.dur(q.longest_wait_secs)), C.el("td", { class: "num" }, C.num(q.answered)),
      C.el("td", { class: "num" }, C.pct(q.service_level)), C.el("td", { class: "num" }, C.num(q.abandoned)),
      C.el("td", { class: "num" }, C.num(q.available_agents)))));
    const ab = document.getElementById("agents");
    ab.replaceChildren(...d.agents.map(a => C.el("tr", {},
      C.el("th", { scope: "row" }, a.id),
      C.el("td", { class: "state-" + a.state }, C.STATE[a.state] || a.state),
      C.el("td", { class: "num" }, C.dur(a.secs_in_state)), C.el("td", { class: "num" }, C.num(a.calls_taken)))));
    C.bars(document.getElementById("chart-per-minute"),
      d.per_minute.map(b => ({ label: C.hm(b.at), value: b.offered })), { every: 10, title: "每分钟来电" });
    C.hbars(document.getElementById("chart-funnel"),
      C.FUNNEL.map(([k, l]) => ({ label: l, value: d.funnel[k] || 0 })), "来电去向");
    const ends = Object.entries(d.end_reasons).sort((a, b) => b[1] - a[1]);
    C.hbars(document.getElementById("chart-end"),
      ends.length ? ends.map(([k, v]) => ({ label: C.END[k] || k, value: v })) : [{ label: "暂无", value: 0 }], "结束原因");
    C.bars(document.getElementById("chart-security"),
      d.security.map(b => ({ label: C.hm(b.at), value: b.pin_failed, value2: b.lockout })), { every: 4, title: "密码错误/锁定" });
    C.hbars(document.getElementById("chart-dtmf"),
      C.DTMF.map(([k, l]) => ({ label: l, value: d.dtmf[k] || 0 })), "按键来源");
  }

  try {
    const r = await fetch("/api/wallboard", { credentials: "same-origin" });
    if (r.ok) render(await r.json());
  } catch (_) { /* the stream below retries */ }
  const es = new EventSource("/api/events");
  es.addEventListener("wallboard", (ev) => render(JSON.parse(ev.data)));
  es.onerror = () => C.text("updated", "连接中断，正在重连…");
})();
