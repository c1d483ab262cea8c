"use strict";
PW.start(() => {
  const form = document.getElementById("signin");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const error = document.getElementById("signin-error");
    error.textContent = "";
    try {
      await PW.signIn(form.username.value, form.password.value);
      const next = PW.param("next") || "/console/";
      location.assign(next.startsWith("/") && !next.startsWith("//") ? next : "/console/");
    } catch (e) {
      const known = ["invalid_grant", "rate_limited"];
      error.textContent = PW.t(known.includes(e.code) ? `signin.${e.code}` : "signin.failed");
    }
  });
  document.getElementById("username").focus();
});
