// The live task view: a Server-Sent Events stream fills in the host x stage matrix, the
// progress bar and the console. Log text only ever goes through textContent.
"use strict";
(function () {
  var MAX_LINES = 20000;          // what the console keeps in the page
  var FINAL = ["succeeded", "failed", "cancelled", "rejected", "interrupted"];
  var FINISHED_STEPS = ["succeeded", "failed", "skipped", "cancelled"];

  var live = document.getElementById("live");
  if (!live) { return; }
  var url = live.getAttribute("data-events");
  var labels = JSON.parse(live.getAttribute("data-labels") || "{}");
  var shownState = live.getAttribute("data-state");
  var matrix = document.getElementById("matrix");
  var progress = document.getElementById("progress");
  var progressText = document.getElementById("progress-text");
  var consoleEl = document.getElementById("console");
  var hostFilter = document.getElementById("console-host");
  var stderrOnly = document.getElementById("console-stderr");
  var follow = document.getElementById("console-follow");
  var status = document.getElementById("console-status");
  var trimmed = document.getElementById("console-trimmed");

  function label(word) { return labels[word] || word.replace(/_/g, " "); }

  function formatDuration(seconds) {
    if (seconds === null || seconds === undefined) { return ""; }
    if (seconds >= 60) {
      var s = Math.floor(seconds % 60);
      return Math.floor(seconds / 60) + "m" + (s < 10 ? "0" : "") + s + "s";
    }
    return seconds.toFixed(1) + "s";
  }

  // -- the matrix and the progress bar ---------------------------------------------------

  var cells = {};  // "host\u0000stage" -> its td
  function key(host, stage) { return host + "\u0000" + stage; }
  matrix.querySelectorAll("td[data-stage]").forEach(function (td) {
    cells[key(td.getAttribute("data-host"), td.getAttribute("data-stage"))] = td;
  });

  function cellFor(host, stage) {
    return cells[key(host, stage)] || addCell(host, stage);
  }

  function addCell(host, stage) {
    // A host the page did not know about (the target changed meanwhile): add its row.
    var stages = Array.prototype.map.call(matrix.querySelectorAll("thead th[data-stage]"),
                                          function (th) { return th.getAttribute("data-stage"); });
    if (stages.indexOf(stage) < 0) { return null; }
    var row = document.createElement("tr");
    row.setAttribute("data-host", host);
    var head = document.createElement("th");
    head.setAttribute("scope", "row");
    head.textContent = host || label("build host");
    row.appendChild(head);
    var found = null;
    stages.forEach(function (s) {
      var td = document.createElement("td");
      if (s === stage || (host && s !== "build")) {
        td.className = "step step-pending";
        td.setAttribute("data-host", host);
        td.setAttribute("data-stage", s);
        td.setAttribute("data-status", "pending");
        cells[key(host, s)] = td;
      } else {
        td.className = "na";
      }
      if (s === stage) { found = td; }
      row.appendChild(td);
    });
    matrix.tBodies[0].appendChild(row);
    if (hostFilter && host) {
      var option = document.createElement("option");
      option.value = host;
      option.textContent = host;
      hostFilter.appendChild(option);
    }
    return found;
  }

  function setCell(cell, stepStatus, duration) {
    if (!cell) { return; }
    if (cell.getAttribute("data-status") === stepStatus &&
        cell.getAttribute("data-duration") === String(duration)) { return; }
    cell.setAttribute("data-status", stepStatus);
    cell.setAttribute("data-duration", String(duration));
    cell.className = "step step-" + stepStatus;
    var name = document.createElement("span");
    name.className = "status";
    name.textContent = label(stepStatus);
    var took = document.createElement("span");
    took.className = "dur";
    took.textContent = formatDuration(duration);
    cell.replaceChildren(name, took);
  }

  function updateProgress() {
    var cells = matrix.querySelectorAll("td[data-status]");
    var done = 0;
    cells.forEach(function (c) {
      if (FINISHED_STEPS.indexOf(c.getAttribute("data-status")) >= 0) { done++; }
    });
    progress.max = Math.max(cells.length, 1);
    progress.value = done;
    progressText.textContent = done + " / " + cells.length;
  }

  function setState(state) {
    var badges = document.querySelectorAll('[data-testid="task-state"]');
    badges.forEach(function (badge) {
      badge.setAttribute("data-state", state);
      badge.className = "state state-" + state + " big";
      badge.textContent = label(state);
    });
    live.setAttribute("data-state", state);
  }

  function onTask(snapshot) {
    snapshot.steps.forEach(function (step) {
      setCell(cellFor(step[0], step[1]), step[2], step[4]);
    });
    updateProgress();
    setState(snapshot.state);
    if (snapshot.state !== shownState) {
      shownState = snapshot.state;
      refreshHeader();
    }
  }

  // Header and buttons change with the state (Start goes, Retry comes): fetch this page
  // again and swap in its server-rendered parts.
  var refreshing = null;
  function refreshHeader() {
    if (refreshing) { clearTimeout(refreshing); }
    refreshing = setTimeout(function () {
      refreshing = null;
      fetch(window.location.pathname, {credentials: "same-origin"})
        .then(function (r) { return r.ok ? r.text() : Promise.reject(r.status); })
        .then(function (html) {
          var doc = new DOMParser().parseFromString(html, "text/html");
          document.querySelectorAll("[data-refresh][id]").forEach(function (old) {
            var fresh = doc.getElementById(old.id);
            if (fresh) { old.replaceWith(document.importNode(fresh, true)); }
          });
          setState(live.getAttribute("data-state"));
        })
        .catch(function () { /* the live parts still show the state */ });
    }, 300);
  }

  // -- the console -----------------------------------------------------------------------

  var pending = [];
  var scheduled = false;
  var kept = 0;

  function visible(el) {
    var host = hostFilter ? hostFilter.value : "*";
    if (host !== "*" && el.getAttribute("data-host") !== host) { return false; }
    if (stderrOnly && stderrOnly.checked && !el.classList.contains("stderr")) { return false; }
    return true;
  }

  function lineElement(line) {
    var el = document.createElement("div");
    el.className = "ln " + line.stream;
    el.setAttribute("data-host", line.host);
    el.setAttribute("data-seq", String(line.seq));
    var who = document.createElement("span");
    who.className = "host";
    who.textContent = (line.host || (line.stage === "build" ? label("build host") : "")) +
      " " + line.stage + " ";
    var text = document.createElement("span");
    text.className = "text";
    text.textContent = line.line;
    el.appendChild(who);
    el.appendChild(text);
    if (!visible(el)) { el.hidden = true; }
    return el;
  }

  function flush() {
    scheduled = false;
    if (!pending.length) { return; }
    var fragment = document.createDocumentFragment();
    pending.forEach(function (line) { fragment.appendChild(lineElement(line)); });
    kept += pending.length;
    pending = [];
    consoleEl.appendChild(fragment);
    while (kept > MAX_LINES) {
      consoleEl.removeChild(consoleEl.firstElementChild);
      kept--;
      trimmed.hidden = false;
    }
    if (follow.checked) { consoleEl.scrollTop = consoleEl.scrollHeight; }
  }

  function onLine(line) {
    pending.push(line);
    if (!scheduled) {
      scheduled = true;
      window.requestAnimationFrame(flush);
    }
  }

  function refilter() {
    consoleEl.querySelectorAll(".ln").forEach(function (el) { el.hidden = !visible(el); });
    if (follow.checked) { consoleEl.scrollTop = consoleEl.scrollHeight; }
  }

  if (hostFilter) { hostFilter.addEventListener("change", refilter); }
  if (stderrOnly) { stderrOnly.addEventListener("change", refilter); }
  follow.addEventListener("change", function () {
    if (follow.checked) { consoleEl.scrollTop = consoleEl.scrollHeight; }
  });
  // Scrolling up to read pauses following; scrolling back to the end resumes it.
  consoleEl.addEventListener("scroll", function () {
    var atEnd = consoleEl.scrollHeight - consoleEl.scrollTop - consoleEl.clientHeight < 24;
    if (follow.checked !== atEnd) { follow.checked = atEnd; }
  });

  // -- the stream ------------------------------------------------------------------------

  if (!url || !window.EventSource) { return; }
  // Replay from the first line: a reload shows the whole story, then follows live.
  var source = new EventSource(url + "?after=0");
  status.textContent = "";
  source.addEventListener("line", function (ev) { onLine(JSON.parse(ev.data)); });
  source.addEventListener("task", function (ev) { onTask(JSON.parse(ev.data)); });
  source.addEventListener("end", function () {
    source.close();
    flush();
    live.setAttribute("data-ended", "1");
    status.textContent = label(live.getAttribute("data-state"));
  });
  source.addEventListener("error", function () {
    // The browser reconnects by itself (resuming with Last-Event-ID) unless it gave up.
    if (source.readyState === EventSource.CLOSED && !live.hasAttribute("data-ended")) {
      status.textContent = label("disconnected");
    }
  });
  if (FINAL.indexOf(shownState) >= 0) { live.setAttribute("data-final", "1"); }
})();
