"use strict";
document.getElementById("login-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const errEl = document.getElementById("login-error");
  errEl.textContent = "";
  const user = document.getElementById("user").value.trim();
  const password = document.getElementById("password").value;
  if (!user || !password) { errEl.textContent = "请输入用户名和密码"; return; }
  const r = await fetch("/login", {
    method: "POST", credentials: "same-origin",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ user, password }),
  });
  if (r.ok) {
    const d = await r.json();
    location.href = d.home;
  } else if (r.status === 429) {
    errEl.textContent = "失败次数过多，请稍后再试";
  } else {
    errEl.textContent = "用户名或密码错误";
  }
});
