// Shipyard's small page helpers. No inline scripts anywhere (the CSP forbids them).
"use strict";
(function () {
  // Remember the browser's time zone so the server can show dates in it.
  try {
    var tz = Intl.DateTimeFormat().resolvedOptions().timeZone;
    if (tz && document.cookie.indexOf("tz=" + encodeURIComponent(tz)) < 0) {
      document.cookie = "tz=" + encodeURIComponent(tz) + "; path=/; max-age=31536000; samesite=lax";
    }
  } catch (e) { /* very old browser: UTC it is */ }

  document.addEventListener("submit", function (ev) {
    var form = ev.target;
    var question = form.getAttribute("data-confirm");
    if (question && !window.confirm(question)) { ev.preventDefault(); return; }
    // One click, one submission: a double click never sends twice.
    var buttons = form.querySelectorAll("button[type=submit], button:not([type])");
    setTimeout(function () { buttons.forEach(function (b) { b.disabled = true; }); }, 0);
  });

  document.addEventListener("change", function (ev) {
    if (ev.target.matches("select[data-autosubmit]")) { ev.target.form.submit(); }
  });
})();

// For scripts that call the JSON API with the session cookie.
window.shipyard = {
  csrf: function () {
    var meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.getAttribute("content") : "";
  },
  api: function (path, options) {
    options = options || {};
    options.headers = Object.assign({"Accept": "application/json", "X-CSRF-Token": window.shipyard.csrf()},
                                    options.headers || {});
    options.credentials = "same-origin";
    return fetch("/api/v1" + path, options).then(function (r) {
      return r.json().then(function (body) {
        if (!r.ok) { throw new Error(body.message || r.statusText); }
        return body;
      });
    });
  }
};
