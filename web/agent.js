"use strict";
(async () => {
  const C = Console;
  const s = await C.loadSession("agent");
  if (!s) return;
  C.text("agent-id", s.agent);

  function render(d) {
    const a = d.agent;
    if (!a) { C.text("agent-state", "未配置"); return; }
    C.text("agent-state", C.STATE[a.state] || a.state);
    const secs = a.state === "on_call" ? a.on_call_secs : (a.state === "available" ? a.idle_secs : null);
    C.text("agent-time", secs != null ? "（" + C.dur(secs) + "）" : "");
    document.getElementById("btn-login").disabled = a.state !== "logged_out";
    document.getElementById("btn-pause").disabled = a.state === "logged_out" || a.state === "paused";
    document.getElementById("btn-unpause").disabled = a.state !== "paused";
    document.getElementById("btn-logout").disabled = a.state === "logged_out";
    const p = d.pop;
    document.getElementById("pop").hidden = !p;
    document.getElementById("pop-empty").hidden = !!p;
    if (p) {
      C.text("pop-id", p.id_masked || "未输入");
      C.text("pop-verified", p.verified ? "已通过" : "未通过");
      C.text("pop-status", C.AUTH[p.status] || p.status);
      C.text("pop-heard", p.heard.length ? p.heard.map(i => C.INSURANCE[i] || i).join("、") : "无");
      C.text("pop-queue", p.queue || "—");
    }
  }

  for (const b of document.querySelectorAll("button[data-action]")) {
    b.addEventListener("click", async () => {
      const r = await C.post(`/agents/${encodeURIComponent(s.agent)}/${b.dataset.action}`);
      C.text("action-error", r.ok ? "" : "操作失败：" + ((r.data && r.data.error) || r.status));
      if (r.ok) {
        const d = await fetch("/api/desk", { credentials: "same-origin" });
        if (d.ok) render(await d.json());
      }
    });
  }
  const first = await fetch("/api/desk", { credentials: "same-origin" });
  if (first.ok) render(await first.json());
  const es = new EventSource("/api/desk/events");
  es.addEventListener("desk", (ev) => render(JSON.parse(ev.data)));
})();
