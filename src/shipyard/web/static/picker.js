// The commit picker of the deploy form: branch or tag, then one of its recent commits.
// It only fills in the plain "ref" field, so the form works the same without it.
"use strict";
(function () {
  var picker = document.getElementById("picker");
  var refInput = document.getElementById("f-ref");
  if (!picker || !refInput || !window.shipyard) { return; }
  var api = picker.getAttribute("data-api");
  var defaultBranch = picker.getAttribute("data-default-branch");
  var kind = document.getElementById("ref-kind");
  var name = document.getElementById("ref-name");
  var list = document.getElementById("commits");
  var status = document.getElementById("picker-status");
  var msg = function (key) { return picker.getAttribute("data-msg-" + key) || ""; };
  var initialRef = refInput.value.trim();
  var fetched = false;  // the first call fetches the repository; later ones read the mirror

  picker.hidden = false;

  function say(text) { status.textContent = text; }

  function fail(err) { say(msg("error") + " " + (err && err.message ? err.message : "")); }

  function loadRefs(chosen) {
    say(msg("loading"));
    var which = kind.value;
    return window.shipyard.api(api + "/" + which + (fetched ? "?fetch=false" : ""))
      .then(function (refs) {
        fetched = true;
        name.replaceChildren();
        refs.forEach(function (ref) {
          var option = document.createElement("option");
          option.value = ref.name;
          option.textContent = ref.name;
          name.appendChild(option);
        });
        var names = refs.map(function (r) { return r.name; });
        if (chosen && names.indexOf(chosen) >= 0) { name.value = chosen; }
        else if (which === "branches" && names.indexOf(defaultBranch) >= 0) { name.value = defaultBranch; }
        say("");
        return name.value ? loadCommits(name.value) : null;
      })
      .catch(fail);
  }

  var latestRequest = 0;

  function loadCommits(ref) {
    say(msg("loading"));
    list.replaceChildren();
    var query = "?limit=20&fetch=false&ref=" + encodeURIComponent(ref);
    var request = ++latestRequest;
    return window.shipyard.api(api + "/commits" + query).then(function (commits) {
      // Two loads can overlap (page load, then a branch picked): only the latest one
      // draws, and it replaces the list rather than adding to it.
      if (request !== latestRequest) { return; }
      say(commits.length ? "" : msg("empty"));
      list.replaceChildren.apply(list, commits.map(function (c, i) { return commitRow(c, i, ref); }));
      markChosen();
    }).catch(fail);
  }

  function commitRow(c, index, ref) {
    var row = document.createElement("label");
    row.className = "commit";
    var radio = document.createElement("input");
    radio.type = "radio";
    radio.name = "commit";
    radio.value = c.sha;
    // The newest commit of a branch or tag deploys by name; an older one by SHA.
    radio.setAttribute("data-ref", index === 0 ? ref : c.sha);
    radio.addEventListener("change", function () {
      if (radio.checked) { refInput.value = radio.getAttribute("data-ref"); }
    });
    var sha = document.createElement("code");
    sha.textContent = c.short_sha;
    var author = document.createElement("span");
    author.className = "author";
    author.textContent = c.author;
    var when = document.createElement("time");
    when.dateTime = c.date;
    when.textContent = new Date(c.date).toLocaleString();
    var message = document.createElement("span");
    message.className = "message";
    message.textContent = c.message;
    row.append(radio, " ", sha, " ", message, " ", author, " ", when);
    if (index === 0) {
      var head = document.createElement("span");
      head.className = "head";
      head.textContent = msg("head");
      row.append(" ", head);
    }
    return row;
  }

  function markChosen() {
    var ref = refInput.value.trim();
    list.querySelectorAll("input[type=radio]").forEach(function (radio) {
      radio.checked = !!ref && (radio.getAttribute("data-ref") === ref ||
                                (ref.length >= 7 && radio.value.indexOf(ref) === 0));
    });
  }

  kind.addEventListener("change", function () {
    loadRefs(null).then(function () { if (name.value) { refInput.value = name.value; markChosen(); } });
  });
  name.addEventListener("change", function () {
    refInput.value = name.value;
    loadCommits(name.value);
  });
  refInput.addEventListener("input", markChosen);

  // Start from what the form holds: a branch or tag name shows its commits.
  loadRefs(initialRef).then(function () {
    if (name.value === initialRef || !initialRef) { return; }
    kind.value = "tags";
    return window.shipyard.api(api + "/tags?fetch=false").then(function (tags) {
      if (tags.some(function (t) { return t.name === initialRef; })) { return loadRefs(initialRef); }
      kind.value = "branches";
    });
  });

  // Checking a server means "only these"; choosing "all" clears the boxes.
  var form = picker.form || picker.closest("form");
  if (form) {
    form.addEventListener("change", function (ev) {
      var t = ev.target;
      if (t.name === "servers" && t.checked) {
        var some = form.querySelector('input[name=servers_mode][value=some]');
        if (some) { some.checked = true; }
      } else if (t.name === "servers_mode" && t.value === "all" && t.checked) {
        form.querySelectorAll("input[name=servers]").forEach(function (box) { box.checked = false; });
      }
    });
  }
})();
