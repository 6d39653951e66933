/* fallbackkit review station: the keyboard-first review screen.
   Enter accepts, digits pick an option, typing transcribes, Tab/Shift+Tab move, Esc skips, Z shows the page,
   Alt with + / - / 0 zooms the crop (or the page while it is shown).
   The next item is fetched while the clerk looks at the current one, and shown as soon as a decision is saved. */
(function () {
  "use strict";
  var work = document.getElementById("work");
  if (!work) return;
  var S = JSON.parse(work.getAttribute("data-strings"));
  var query = work.getAttribute("data-query");
  var start = work.getAttribute("data-start");
  var csrf = document.querySelector('meta[name="csrf-token"]').getAttribute("content");
  var box = document.getElementById("item");
  var statusEl = document.getElementById("status");
  var current = null, prefetched = null, choice = null, busy = false, comb = null;

  function el(tag, attrs, children) {
    var e = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) {
      if (k === "text") e.textContent = attrs[k]; else e.setAttribute(k, attrs[k]);
    });
    (children || []).forEach(function (c) { if (c) e.appendChild(typeof c === "string" ? document.createTextNode(c) : c); });
    return e;
  }
  function show(v) {
    if (v === null || v === undefined) return "—";
    if (v === true) return "☑ " + S.ticked;
    if (v === false) return "☐ " + S.empty;
    if (Array.isArray(v)) return v.length ? v.join(", ") : "—";
    return String(v);
  }
  function same(a, b) { return JSON.stringify(a) === JSON.stringify(b); }
  function say(text, isError) { statusEl.textContent = text || ""; statusEl.className = isError ? "error" : ""; }
  function url(path, extra) {
    var q = [query, extra].filter(Boolean).join("&");
    return path + (q ? "?" + q : "");
  }
  function getJSON(u) {
    return fetch(u, { credentials: "same-origin", headers: { "Accept": "application/json" } }).then(function (r) {
      if (r.status === 401) { window.location = "/login"; throw new Error("login"); }
      return r.json();
    });
  }
  // Each item handed out is claimed for this clerk (a few minutes, renewed below while it is on
  // screen), so other clerks are handed other items. keep: the item still on screen stays claimed.
  function fetchNext(after, keep) {
    return getJSON(url("/api/next", "after=" + (after || 0) + (keep ? "&keep=" + keep : "")));
  }
  // renewed only while the clerk is at it: a screen left open by someone who walked away lets its
  // items go a few minutes after the last key press or click
  var lastActive = Date.now();
  ["keydown", "pointerdown"].forEach(function (t) { document.addEventListener(t, function () { lastActive = Date.now(); }, true); });
  function renewClaims() {
    var ids = [current, prefetched && prefetched.reading].filter(Boolean).map(function (r) { return r.reading_id; });
    if (!ids.length || document.hidden || Date.now() - lastActive > 150000) return;
    fetch("/api/claims", {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf, "Accept": "application/json" },
      body: JSON.stringify({ reading_ids: ids })
    }).then(function (r) { return r.ok ? r.json() : null; }).then(function (d) {
      // the prefetched item went to someone else meanwhile: fetch a fresh one when moving on
      if (d && prefetched && prefetched.reading && d.held.indexOf(prefetched.reading.reading_id) < 0) prefetched = null;
    }).catch(function () {});
  }
  window.setInterval(renewClaims, 60000);
  function prefetch() {
    prefetched = null;
    if (!current) return;
    var id = current.reading_id;
    fetchNext(id, id).then(function (d) {
      if (current && current.reading_id === id) {
        prefetched = d;
        if (d.reading && d.reading.crop_url) { new Image().src = d.reading.crop_url; }
      }
    });
  }

  // --- comb boxes (issue 10): one box per printed box, the printed separators in place (never
  // typed). The machine's sure digits are in their boxes (grey); the boxes it is unsure of are open
  // (orange, as on the crop) and the cursor waits on the first. A digit fills the box under the
  // cursor (white: the clerk's) and the cursor goes on to the next open box. Enter saves when no box
  // is open; Backspace clears the box before the cursor, ← → Home End move, Delete clears every box
  // (type the field again), Space leaves a number's box empty. With the whole suggestion pre-filled
  // the first digit typed starts the field again (as typing over selected text did).
  function Comb(r, sug) {
    var self = this;
    self.groups = sug.groups; self.number = r.type === "number"; self.pristine = true;
    var shown = sug.prefill || sug.partial || sug.blank;
    self.cells = sug.cells.map(function (c) {
      var machine = shown && c.sure;
      // must: a box the machine is unsure of next to pre-filled ones is typed (a digit, or Space)
      return { digit: machine ? (c.digit || "") : "", who: machine ? "machine" : null, open: !machine, must: shown && !machine };
    });
    self.cursor = self.nextOpen(-1);
    self.el = el("div", { "class": "comb", id: "comb", tabindex: "0", role: "textbox",
      "aria-label": S.comb_label.replace("{field}", r.field_label || r.field), "data-pattern": sug.pattern || "" });
    self.hidden = el("input", { type: "hidden", id: "typed" });
    self.el.addEventListener("keydown", function (ev) { self.key(ev); });
    self.el.addEventListener("click", function (ev) {
      var c = ev.target.closest ? ev.target.closest("[data-i]") : null;
      if (c) { self.cursor = parseInt(c.getAttribute("data-i"), 10); self.pristine = false; self.draw(); }
    });
    self.draw();
  }
  Comb.prototype.nextOpen = function (i) {
    var n = this.cells.length, j;
    for (j = i + 1; j < n; j++) if (this.cells[j].open) return j;
    for (j = 0; j <= i && j < n; j++) if (this.cells[j].open) return j;
    return n;
  };
  Comb.prototype.clear = function () {  // every box empty and the clerk's: the field typed again
    this.cells.forEach(function (x) { x.digit = ""; x.who = null; x.open = true; x.must = false; });
    this.cursor = 0;
  };
  Comb.prototype.key = function (ev) {
    if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
    var k = ev.key, n = this.cells.length, c = this.cursor;
    if (/^[0-9]$/.test(k)) { ev.preventDefault(); this.put(k); return; }
    if (k === " ") {
      ev.preventDefault();
      if (!this.number) { say(S.comb_digits, true); return; }
      this.put(""); return;
    }
    if (k === "Backspace") { ev.preventDefault(); if (c > 0) { this.cells[c - 1] = { digit: "", who: null, open: true, must: !this.number }; this.cursor = c - 1; } }
    else if (k === "Delete") { ev.preventDefault(); this.clear(); }
    else if (k === "ArrowLeft") { ev.preventDefault(); this.cursor = Math.max(0, c - 1); }
    else if (k === "ArrowRight") { ev.preventDefault(); this.cursor = Math.min(n, c + 1); }
    else if (k === "Home") { ev.preventDefault(); this.cursor = 0; }
    else if (k === "End") { ev.preventDefault(); this.cursor = n; }
    else if (k.length === 1) { ev.preventDefault(); say(S.comb_digits, true); return; }
    else return;
    this.pristine = false; say(""); this.draw();
  };
  Comb.prototype.put = function (digit) {  // digit "" (Space): the clerk says this box is empty
    var n = this.cells.length;
    if (this.cursor >= n) {
      if (!this.pristine || this.cells.some(function (x) { return x.open; })) { say(S.comb_full, true); return; }
      this.clear();  // start again
    }
    this.cells[this.cursor] = { digit: digit, who: "clerk", open: false, must: false };
    this.pristine = false;
    this.cursor = this.nextOpen(this.cursor);
    say(""); this.draw();
  };
  Comb.prototype.result = function () {  // {text} (null: every box empty), or {problem: "todo" | "gap"}
    var cells = this.cells, parts = [], i = 0;
    if (cells.some(function (x) { return x.open && x.must; })) return { problem: "todo" };  // a box left to the clerk
    if (cells.every(function (x) { return x.digit === ""; })) return { text: null };
    this.groups.forEach(function (g) { parts.push({ sep: g[0], ds: cells.slice(i, i + g[1]).map(function (x) { return x.digit; }) }); i += g[1]; });
    if (!this.number) {
      if (cells.some(function (x) { return x.digit === ""; })) return { problem: "todo" };
      return { text: parts.map(function (p) { return p.sep + p.ds.join(""); }).join("") };
    }
    var whole = parts[0].ds, first = -1, last = -1;
    whole.forEach(function (d, k) { if (d !== "") { if (first < 0) first = k; last = k; } });
    if (first < 0) return { problem: "gap" };
    for (var k = first; k <= last; k++) if (whole[k] === "") return { problem: "gap" };
    var text = whole.join("");
    if (parts[1]) {
      var dec = parts[1].ds, used = dec.join("");
      for (var m = 0; m < used.length; m++) if (dec[m] === "") return { problem: "gap" };
      if (used) text += "." + used;
    }
    return { text: text };
  };
  Comb.prototype.draw = function () {
    var self = this, i = 0, box = self.el;
    box.textContent = "";
    self.groups.forEach(function (g) {
      if (g[0]) box.appendChild(el("span", { "class": "sep", text: g[0] === " " ? "\u2002" : g[0] }));
      for (var k = 0; k < g[1]; k++, i++) {
        var c = self.cells[i];
        var cls = "cell " + (c.open ? "todo" : c.who === "machine" ? "machine" : "clerk") + (i === self.cursor ? " cursor" : "");
        box.appendChild(el("span", { "class": cls, "data-i": String(i), text: c.digit || "\u00a0" }));
      }
    });
    box.appendChild(el("span", { "class": "end" + (self.cursor >= self.cells.length ? " cursor" : ""), "data-i": String(self.cells.length), text: "\u00a0" }));
    var got = self.result();
    self.hidden.value = got.text || "";
    box.setAttribute("data-value", got.text || "");
    document.querySelectorAll("#item .cellmark").forEach(function (m) {
      m.classList.toggle("cur", parseInt(m.getAttribute("data-cell"), 10) - 1 === self.cursor);
    });
  };

  function render(d) {
    box.textContent = "";
    document.getElementById("done").hidden = true;
    if (!d || d.done) { current = null; document.getElementById("done").hidden = false; showEnd(d); return; }
    var r = d.reading; current = r; choice = null; comb = null;
    var c = r.capture || {};
    var meta = el("div", { "class": "meta" }, [
      el("span", {}, [S.ward + " ", el("b", { text: (c.ward || "—") + (c.bed ? " · " + S.bed + " " + c.bed : "") })]),
      el("span", {}, [S.patient + " ", el("b", { id: "patient", text: (r.patient_name ? r.patient_name + " · " : "") + (c.patient_mrn || c.downtime_mrn || "—") })]),
      el("span", {}, [S.sheet + " ", el("b", { text: r.sheet_id }), " · " + (r.form_title || c.template || "") + " " + S.page + " " + (c.page || "?")]),
      el("a", { href: r.page_link, text: S.open_page })
    ]);
    var extra = [];
    if (r.extra && r.extra.medication) extra.push(S.medication + S.colon + r.extra.medication);
    if (r.extra && r.extra.scheduled) extra.push(S.scheduled + " " + r.extra.scheduled);
    var head = el("h1", { "class": "fieldname", text: r.field_label + " " }, [
      extra.length ? el("small", { "class": "extra", text: " · " + extra.join(" · ") }) : null]);
    var crop = el("div", { "class": "cropbox" }, [r.crop_url ? el("img", { src: r.crop_url, alt: r.field_label, id: "crop" }) : el("p", { "class": "empty", text: S.no_image })]);
    var sug = r.suggestion;
    if (sug && r.crop_url) {
      // unsure digits (and boxes that hold no digit) highlighted on the crop
      var frame = el("div", { "class": "cropframe" }, [crop.firstChild]);
      (sug.cells || []).forEach(function (cell, i) {
        if (!cell.crop) return;
        var mark = el("div", { "class": (cell.low || cell.digit === null) ? "cellmark lowcell" : "cellmark", "data-cell": String(i + 1) });
        mark.style.left = (cell.crop[0] * 100) + "%"; mark.style.top = (cell.crop[1] * 100) + "%";
        mark.style.width = (cell.crop[2] * 100) + "%"; mark.style.height = (cell.crop[3] * 100) + "%";
        frame.appendChild(mark);
      });
      crop.appendChild(frame);
    }
    var whyParts = [S.why + S.colon, el("span", { "class": "badge warn", text: r.reason_text || r.reason || "?" })];
    // handwriting the machine does not read has no "machine read" value: saying "— (confidence 90%)" confused clerks
    if (r.options || (r.value !== null && r.value !== undefined)) {
      whyParts.push("   " + S.machine + S.colon, el("b", { id: "machine", text: show(r.value) }),
        "  (" + S.confidence + " " + Math.round((r.confidence || 0) * 100) + S.percent + ")");
    }
    var why = el("p", { "class": "why" }, whyParts);
    var answer = el("div", { "class": "answer", id: "answer" });
    var actions = el("div", { "class": "actions" });
    var accept = el("button", { "class": "primary", id: "accept", type: "button" }, [S.accept + " ", el("kbd", { text: S.enter })]);
    var skip = el("button", { id: "skip", type: "button" }, [S.skip + " ", el("kbd", { text: S.esc })]);
    var illegible = el("button", { id: "illegible", type: "button" }, [S.illegible + " ", el("kbd", { text: "Alt+I" })]);
    var zoom = el("button", { id: "zoom", type: "button" }, [S.zoom + " ", el("kbd", { text: S.z })]);
    accept.addEventListener("click", function () { decide(false); });
    skip.addEventListener("click", skipItem);
    illegible.addEventListener("click", function () { send("illegible", null); });
    zoom.addEventListener("click", togglePage);
    var zoomOut = el("button", { id: "zoom-out", type: "button", title: S.zoom_out }, ["− ", el("kbd", { text: S.zoom_out_key })]);
    var zoomIn = el("button", { id: "zoom-in", type: "button", title: S.zoom_in }, ["+ ", el("kbd", { text: S.zoom_in_key })]);
    zoomOut.addEventListener("click", function () { zoomBy(-1); });
    zoomIn.addEventListener("click", function () { zoomBy(1); });
    actions.appendChild(accept); actions.appendChild(skip); actions.appendChild(illegible); actions.appendChild(zoom);
    actions.appendChild(el("span", { "class": "zoombar" }, [zoomOut, el("span", { id: "zoomlevel", "aria-live": "polite" }), zoomIn]));

    if (r.options) {
      choice = r.type === "multichoice" ? (Array.isArray(r.value) ? r.value.slice() : []) : r.value;
      r.options.forEach(function (opt, i) {
        var named = r.option_labels && r.option_labels[i];
        var label = opt === true ? "☑ " + S.ticked : opt === false ? "☐ " + S.empty : opt === null ? S.blank : (named || String(opt));
        var b = el("button", { "class": "opt", type: "button", "data-index": String(i + 1) }, [el("span", { "class": "key", text: String(i + 1) }), label]);
        b.addEventListener("click", function () { pick(i); });
        answer.appendChild(b);
      });
      markSelected();
    } else {
      var input;
      if (sug && sug.groups && sug.cells && sug.cells.length && typeof r.value !== "string") {
        comb = new Comb(r, sug);  // comb boxes: the machine's sure digits in place, the clerk types the rest
        input = comb.hidden;
        answer.appendChild(comb.el); answer.appendChild(input);
        answer.appendChild(el("p", { "class": "combkeys", id: "comb-keys" }, [
          el("span", { "class": "swatch machine" }), el("span", { "class": "swatch clerk" }), el("span", { "class": "swatch todo" }),
          S.comb_key + " — " + S.comb_keys]));
        if (sug.blank) answer.appendChild(el("p", { "class": "suggestion", id: "comb-blank", text: S.comb_blank }));
      } else {
        input = el("input", { "class": "typed", id: "typed", autocomplete: "off", spellcheck: "false", placeholder: S.type_here });
        if (typeof r.value === "string") input.value = r.value;
        else if (sug && sug.prefill && sug.suggestion) { input.value = sug.suggestion; input.setAttribute("data-prefilled", "1"); }
        if (r.type === "number") input.setAttribute("inputmode", "decimal");
        answer.appendChild(input);
      }
      if (r.code_list) {
        answer.appendChild(el("p", { "class": "codes", id: "code-list", text: S.codes + S.colon +
          r.code_list.map(function (c) { return c.code + " " + c.text; }).join(" · ") }));
      }
      if (r.legend_row) answer.appendChild(el("p", { "class": "suggestion", id: "legend-note", text: S.legend_first }));
      var ih = r.initials_help;
      if (ih && ih.picks.length) {
        // initials: one key (1-9) picks a row of the sheet's legend, or a recent value without one
        var picks = el("div", { "class": "picks", id: "initials-picks" }, [
          el("span", { "class": "pickhead", text: (ih.source === "legend" ? S.initials_legend : S.initials_recent) + S.colon.trimEnd() })]);
        ih.picks.forEach(function (p) {
          var b = el("button", { "class": "pick", type: "button", "data-key": String(p.key), "data-initials": p.initials },
            [el("span", { "class": "key", text: String(p.key) }), p.initials + (p.name ? " — " + p.name : "")]);
          b.addEventListener("click", function () { pickInitials(p.key); });
          picks.appendChild(b);
        });
        answer.appendChild(picks);
      }
      if (ih && ih.suggested && !input.value) {
        input.value = ih.suggested.value; input.setAttribute("data-prefilled", "1");
        var whyText = ih.suggested.why === "previous_dose" ? S.initials_previous : S.initials_most_used;
        answer.appendChild(el("p", { "class": "suggestion", id: "initials-suggested" },
          [S.suggested + S.colon, el("b", { text: ih.suggested.value }), " (" + whyText + ")"]));
      }
      if (sug && (sug.suggestion || sug.rule)) {
        // the suggestion digit by digit, unsure ones highlighted, and the rule it breaks if any
        var digits = el("span", { "class": "digits", id: "suggestion" });
        var k = 0;
        (sug.suggestion || "").split("").forEach(function (ch) {
          var isDigit = /[0-9]/.test(ch);
          var cell = isDigit ? (sug.cells || []).filter(function (c) { return c.digit; })[k++] : null;
          digits.appendChild(el("span", { "class": isDigit ? (cell && cell.low ? "d low" : "d") : "sep", text: ch }));
        });
        var line = [S.suggested + S.colon, digits, " (" + Math.round((sug.suggestion_confidence || 0) * 100) + S.percent + ")"];
        if (!sug.suggestion) line = [S.suggested + ": —"];
        if (sug.rule) line.push(el("span", { "class": "badge warn rule", id: "rule", text: sug.rule }));
        answer.appendChild(el("p", { "class": "suggestion" }, line));
      }
    }
    var hist = null;
    if (r.review) hist = el("p", { "class": "history", text: S.decided_by + " " + r.review.actor + S.colon + show(r.review.value) });
    box.appendChild(el("section", { "class": "card", "data-reading": String(r.reading_id) },
      [meta, head, crop, why, answer, actions, hist, el("div", { "class": "pagebox", id: "pagebox", hidden: "" })]));
    var typed = document.getElementById("typed");
    if (comb) { comb.el.focus(); comb.draw(); } else if (typed) { typed.focus(); typed.select(); } else { accept.focus(); }
    decorate(r);
    applyCropZoom();
    prefetch();
  }

  function pickInitials(key) {
    var ih = current && current.initials_help;
    var p = ih && ih.picks.filter(function (x) { return x.key === key; })[0];
    if (!p || busy) return false;
    document.getElementById("typed").value = p.initials;
    send("transcribe", p.initials);
    return true;
  }
  function markSelected() {
    var buttons = document.querySelectorAll("#answer button.opt");
    buttons.forEach(function (b, i) {
      var opt = current.options[i];
      var on = Array.isArray(choice) ? choice.indexOf(opt) >= 0 : same(choice, opt);
      b.classList.toggle("sel", on);
      b.setAttribute("aria-pressed", on ? "true" : "false");
    });
  }
  function pick(i) {
    var opt = current.options[i];
    if (current.type === "multichoice") {
      var k = choice.indexOf(opt);
      if (k >= 0) choice.splice(k, 1); else choice.push(opt);
      markSelected();
      return;
    }
    choice = opt; markSelected(); decide(true);
  }
  function decide(explicit) {
    var r = current;
    if (!r || busy) return;
    if (r.options) {
      var value = r.type === "multichoice" ? choice.slice().sort() : choice;
      // the machine could not decide: Enter alone must not turn "unsure" into "blank"
      if (!explicit && r.type !== "multichoice" && (value === null || value === undefined) && r.value === null) {
        say(S.pick_option, true); return;
      }
      send(same(value, r.value) ? "confirm" : "correct", value);
      return;
    }
    if (comb) {
      var got = comb.result();
      if (got.problem) { say(S["comb_" + got.problem], true); comb.el.focus(); return; }
      if (got.text === null) {
        if ((r.suggestion && r.suggestion.blank) || r.ink === 0) { send("transcribe", null); return; }
        say(S.type_or_illegible, true); return;
      }
      send(got.text === r.value ? "confirm" : "transcribe", got.text);
      return;
    }
    var text = document.getElementById("typed").value.trim();
    if (!text) {
      if (r.ink === 0) { send("transcribe", null); return; }
      say(S.type_or_illegible, true); return;
    }
    send(text === r.value ? "confirm" : "transcribe", text);
  }
  function send(decision, value) {
    var r = current;
    busy = true;
    fetch("/api/readings/" + r.reading_id + "/decision", {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf, "Accept": "application/json" },
      body: JSON.stringify({ decision: decision, value: value, seen_review_id: r.review ? r.review.review_id : null,
                             confirm_implausible: r.implausibleFor === JSON.stringify(value) })
    }).then(function (resp) {
      return resp.json().then(function (body) { return { status: resp.status, body: body }; });
    }).then(function (res) {
      busy = false;
      if (res.status === 401) { window.location = "/login"; return; }
      if (res.status === 200) { say(S.saved + " ✓ " + r.field_label + " = " + show(decision === "confirm" ? r.value : value)); advance(r.reading_id); }
      else if (res.status === 409) { say(res.body.error, true); advance(r.reading_id); }
      else if (res.status === 422 && res.body.implausible) { r.implausibleFor = JSON.stringify(value); say(res.body.error, true); }
      else { say(S.error + S.colon + (res.body.error || res.status), true); }
    }).catch(function (e) { busy = false; say(S.error + S.colon + e, true); });
  }
  function advance(fromId) {
    var ahead = prefetched && prefetched.reading ? prefetched.reading.reading_id : null;
    if (prefetched && current && current.reading_id === fromId && ahead !== fromId) {
      // a legend row just typed: the slot fetched ahead shows the legend as it was before it
      if (current.legend_row && prefetched.reading.initials_help) { getJSON("/api/readings/" + ahead).then(render); return; }
      render(prefetched); return;
    }
    fetchNext(fromId).then(function (d) {
      // the only item left is the one just skipped: it stays on screen, nothing is "done"
      if (d.reading && d.reading.reading_id === fromId) { say(S.last_one); showProgress(); return; }
      render(d);
    });
  }
  function skipItem() { if (current) { say(""); advance(current.reading_id); } }
  function togglePage() {
    var pb = document.getElementById("pagebox");
    if (!pb || !current) return;
    if (!pb.hidden) { pb.hidden = true; pb.textContent = ""; return; }
    var c = current.capture;
    if (!current.page_url || !c.img_w) { pb.textContent = S.no_image; pb.hidden = false; return; }
    var NS = "http://www.w3.org/2000/svg";
    var svg = document.createElementNS(NS, "svg");
    svg.setAttribute("class", "pageview"); svg.setAttribute("viewBox", "0 0 " + c.img_w + " " + c.img_h);
    var img = document.createElementNS(NS, "image");
    img.setAttribute("href", current.page_url); img.setAttribute("width", c.img_w); img.setAttribute("height", c.img_h);
    svg.appendChild(img);
    if (current.outline) {
      var poly = document.createElementNS(NS, "polygon");
      poly.setAttribute("points", current.outline); poly.setAttribute("class", "hit");
      svg.appendChild(poly);
    }
    pb.appendChild(svg); pb.hidden = false;
    applyPageZoom();
  }

  // --- zoom: on the crop, or on the whole page while it is shown; the level stays from item to item
  var ZOOMS = [1, 1.5, 2, 3, 4, 6];
  var cropZoom = 0, pageZoom = 0;  // indexes into ZOOMS
  function pageSvg() { var pb = document.getElementById("pagebox"); return pb && !pb.hidden ? pb.querySelector("svg") : null; }
  function showZoom() {
    var label = document.getElementById("zoomlevel");
    if (!label) return;
    label.textContent = pageSvg() ? S.zoom_page.replace("{p}", Math.round(ZOOMS[pageZoom] * 100))
      : S.zoom_crop.replace("{p}", Math.round(ZOOMS[cropZoom] * 100));
  }
  function applyCropZoom() {
    var img = document.getElementById("crop");
    if (!img) { showZoom(); return; }
    if (!img.complete || !img.naturalWidth) { img.addEventListener("load", applyCropZoom, { once: true }); return; }
    if (!img.getAttribute("data-base")) img.setAttribute("data-base", String(img.getBoundingClientRect().height));
    var z = ZOOMS[cropZoom], base = parseFloat(img.getAttribute("data-base"));
    var box = img.closest(".cropbox");
    box.classList.toggle("zoomed", z > 1);
    img.style.maxWidth = z > 1 ? "none" : ""; img.style.maxHeight = z > 1 ? "none" : "";
    img.style.height = z > 1 ? Math.round(base * z) + "px" : "";
    if (z > 1) {  // writing starts at the left of a box: show its start, half way down
      box.scrollLeft = 0; box.scrollTop = (box.scrollHeight - box.clientHeight) / 2;
    }
    showZoom();
  }
  function applyPageZoom() {
    var svg = pageSvg();
    if (!svg || !current) { showZoom(); return; }
    var W = current.capture.img_w, H = current.capture.img_h, z = ZOOMS[pageZoom];
    var cx = W / 2, cy = H / 2;
    var pts = (current.outline || "").trim().split(/\s+/).filter(Boolean).map(function (p) { return p.split(",").map(Number); });
    if (pts.length) {  // centred on the field, as far as the page allows
      cx = pts.reduce(function (a, p) { return a + p[0]; }, 0) / pts.length;
      cy = pts.reduce(function (a, p) { return a + p[1]; }, 0) / pts.length;
    }
    var w = W / z, h = H / z;
    var x = Math.min(Math.max(0, cx - w / 2), W - w), y = Math.min(Math.max(0, cy - h / 2), H - h);
    svg.setAttribute("viewBox", [x, y, w, h].map(function (v) { return Math.round(v); }).join(" "));
    svg.setAttribute("data-zoom", String(z));
    showZoom();
  }
  function zoomBy(step) {  // step +1 / -1, or 0 for actual size
    if (!current) return;
    if (pageSvg()) {
      pageZoom = step === 0 ? 0 : Math.min(ZOOMS.length - 1, Math.max(0, pageZoom + step));
      applyPageZoom();
    } else {
      cropZoom = step === 0 ? 0 : Math.min(ZOOMS.length - 1, Math.max(0, cropZoom + step));
      applyCropZoom();
    }
  }
  function zoomStep(ev) {  // what a key asks of the zoom: +1, -1, 0, or null (by key or key position)
    var k = ev.key, c = ev.code;
    if (k === "+" || k === "=" || c === "Equal" || c === "NumpadAdd") return 1;
    if (k === "-" || k === "_" || c === "Minus" || c === "NumpadSubtract") return -1;
    if (k === "0" || c === "Digit0" || c === "Numpad0") return 0;
    return null;
  }
  document.addEventListener("keydown", function (ev) {  // Alt with + / - / 0 works while typing; alone outside the box
    if (!current || ev.ctrlKey || ev.metaKey) return;
    var typing = ev.target && (ev.target.id === "typed" || ev.target.id === "comb");
    if (!ev.altKey && typing) return;
    var step = zoomStep(ev);
    if (step === null) return;
    ev.preventDefault(); zoomBy(step);
  });

  document.addEventListener("keydown", function (ev) {
    if (!current || ev.ctrlKey || ev.metaKey || ev.altKey) return;
    var typing = ev.target && (ev.target.id === "typed" || ev.target.id === "comb");
    if (ev.key === "Escape") { ev.preventDefault(); skipItem(); return; }
    if (ev.key === "Enter") {
      if (ev.target && ev.target.tagName === "BUTTON" && ev.target.id !== "accept" && !ev.target.classList.contains("opt")) return;
      ev.preventDefault();
      if (ev.target && ev.target.classList && ev.target.classList.contains("opt") && current.type !== "multichoice") {
        pick(parseInt(ev.target.getAttribute("data-index"), 10) - 1); return;
      }
      decide(false); return;
    }
    // initials never hold a digit: in an initials box, 1-9 picks that legend row (or recent value)
    if (typing && current.initials_help && /^[1-9]$/.test(ev.key)) {
      if (pickInitials(parseInt(ev.key, 10))) ev.preventDefault();
      return;
    }
    if (typing) return;
    if (current.options && /^[1-9]$/.test(ev.key)) {
      var i = parseInt(ev.key, 10) - 1;
      if (i < current.options.length) { ev.preventDefault(); pick(i); }
      return;
    }
    if (ev.key === "z" || ev.key === "Z") { ev.preventDefault(); togglePage(); }
  });

  // --- where am I, why is this back, undo my last decision (issue 15) ---------------------------
  var progressEl = document.getElementById("progress");
  function minutes(s) { return s < 90 ? Math.max(1, Math.round(s)) + " s" : Math.round(s / 60) + " min"; }
  function showProgress() {
    getJSON(url("/api/progress")).then(function (p) {
      if (!progressEl) return;
      var text = S.n_of.replace("{n}", p.position).replace("{total}", p.total);
      if (p.left_s !== null && p.waiting) text += " · " + S.time_left.replace("{t}", minutes(p.left_s));
      progressEl.textContent = text;
      progressEl.setAttribute("data-position", p.position); progressEl.setAttribute("data-total", p.total);
    });
  }
  function decorate(r) {
    if (r.returned) {
      var b = r.returned;
      var text = S.returned.replace("{decision}", S["decision_" + b.decision] || b.decision).replace("{value}", show(b.value))
        .replace("{who}", b.decided_by).replace("{by}", b.by).replace("{at}", (b.at || "").slice(11, 16));
      var p = el("p", { "class": "returned note", id: "returned", text: text + (b.note ? " — " + b.note : "") });
      var sec = box.querySelector("section.card");
      sec.insertBefore(p, sec.children[1] || null);
    }
    showProgress();
  }
  function showEnd(d) {
    var list = document.getElementById("done-open");
    if (progressEl) progressEl.textContent = "";
    if (!list) return;
    list.textContent = "";
    // items other clerks have on screen: not done, they come back here if left undecided
    if (d && d.claimed) list.appendChild(el("li", { id: "open-claimed", text: S.open_claimed.replace("{n}", d.claimed) }));
    getJSON(url("/api/progress", "end=1")).then(function (p) {
      var o = p.open || {};
      [["conflicts", "/conflicts"], ["quarantine", "/quarantine"], ["identities", "/identities"]].forEach(function (k) {
        if (o[k[0]]) list.appendChild(el("li", {}, [el("a", { href: k[1], id: "open-" + k[0], text: S["open_" + k[0]].replace("{n}", o[k[0]]) })]));
      });
      if (!list.children.length) list.appendChild(el("li", { text: S.all_clear }));
      var first = list.querySelector("a"); if (first) first.focus();
    });
  }
  function undoLast() {
    if (busy) return;
    busy = true;
    fetch("/api/undo-last", {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf, "Accept": "application/json" }, body: "{}"
    }).then(function (resp) {
      return resp.json().then(function (body) { return { status: resp.status, body: body }; });
    }).then(function (res) {
      busy = false;
      if (res.status === 401) { window.location = "/login"; return; }
      if (res.status !== 200) { say(res.body.error || S.error, true); return; }
      getJSON("/api/readings/" + res.body.reading_id).then(function (d) { render(d); say(S.undone_mine); });
    }).catch(function (e) { busy = false; say(S.error + S.colon + e, true); });
  }
  var undoBtn = document.getElementById("undo-last");
  if (undoBtn) undoBtn.addEventListener("click", undoLast);
  document.addEventListener("keydown", function (ev) {  // Alt+P (whole page) and Alt+I (illegible) work while typing
    if (!current || !ev.altKey || ev.ctrlKey || ev.metaKey) return;
    var k = (ev.key || "").toLowerCase();
    if (k === "p" || ev.code === "KeyP") { ev.preventDefault(); togglePage(); }
    else if (k === "i" || ev.code === "KeyI") { ev.preventDefault(); if (!busy) send("illegible", null); }
  });
  document.addEventListener("keydown", function (ev) {  // Alt+U works while typing in the box
    if (ev.altKey && !ev.ctrlKey && !ev.metaKey && (ev.key === "u" || ev.key === "U")) { ev.preventDefault(); undoLast(); }
  });

  (start ? getJSON("/api/readings/" + start) : fetchNext(0)).then(render);
})();

/* Conflicts screen: keyboard first, no reload. A digit takes that scan for the whole sheet the focus
   is in (1 = first capture); every pick is sent with fetch, the settled cards leave the page and the
   focus moves on to the next sheet, never back to the top. */
(function () {
  "use strict";
  var root = document.getElementById("conflicts");
  if (!root) return;
  var S = JSON.parse(root.getAttribute("data-strings"));
  var csrf = document.querySelector('meta[name="csrf-token"]').getAttribute("content");
  var statusEl = document.getElementById("conflict-status");
  function say(text, ok) { statusEl.textContent = text; statusEl.className = ok ? "flash ok" : "flash error"; }
  function post(url, body, json) {
    var headers = { "X-CSRF-Token": csrf, "Accept": "application/json" };
    if (json) headers["Content-Type"] = "application/json";
    return fetch(url, { method: "POST", credentials: "same-origin", headers: headers, body: json ? JSON.stringify(body) : body })
      .then(function (r) { return r.json().then(function (b) { return { status: r.status, body: b }; }); });
  }
  function groups() { return Array.prototype.slice.call(root.querySelectorAll("section.sheetgroup")); }
  function focusGroup(g) {
    if (!g) {
      if (!groups().length && !root.querySelector("p.empty")) {  // (the page says it already when it came empty)
        root.appendChild(Object.assign(document.createElement("p"), { className: "empty", textContent: S.none }));
      }
      statusEl.setAttribute("tabindex", "-1"); statusEl.focus();  // the focus stays on the page, on what happened
      return;
    }
    var b = g.querySelector("button.take-sheet.primary") || g.querySelector("button");
    (b || g).focus();
  }
  function settle(group, fields) {
    var next = groups()[groups().indexOf(group) + 1] || null;
    fields.forEach(function (f) {
      var card = group.querySelector('section.conflict[data-field="' + f.replace(/"/g, '\\"') + '"]');
      if (card) card.remove();
    });
    var left = group.querySelectorAll("section.conflict").length;
    var count = group.querySelector(".count");
    if (left === 0) { group.remove(); focusGroup(next); return; }
    if (count) count.textContent = String(left);
    var d = group.querySelector("details"); if (d) d.open = true;
    // what is left is for the clerk to decide from the paper: the focus goes on that field's own
    // options (or its text box), not on a hidden input, nor back on the scan that could not settle it
    var firstLeft = group.querySelector("section.conflict form.typed button, section.conflict form.typed input[name=typed]")
      || group.querySelector("section.conflict button");
    if (firstLeft) firstLeft.focus();
  }
  function takeSheet(group, button) {
    var sheet = group.getAttribute("data-sheet"), cap = parseInt(button.getAttribute("data-capture"), 10);
    post("/api/conflicts/sheet", { sheet_id: sheet, capture_id: cap }, true).then(function (res) {
      if (res.status !== 200) { say(S.error + (document.documentElement.lang === "fr" ? "\u00a0: " : ": ") + (res.body.error || res.status), false); return; }
      var text = S.taken.replace("{sheet}", sheet).replace("{n}", res.body.resolved.length);
      if (res.body.left.length) text += " " + S.left.replace("{fields}", res.body.left.map(function (f) {
        var h = group.querySelector('section.conflict[data-field="' + f.replace(/"/g, '\\"') + '"] h3');
        return h ? h.textContent : f;
      }).join(", "));
      say(text, true);
      settle(group, res.body.resolved);
    });
  }
  root.addEventListener("click", function (ev) {
    var b = ev.target.closest("button.take-sheet");
    if (b) { ev.preventDefault(); takeSheet(b.closest("section.sheetgroup"), b); }
  });
  root.addEventListener("submit", function (ev) {  // a pick for one field, also without a reload
    var form = ev.target, group = form.closest("section.sheetgroup");
    ev.preventDefault();
    var data = new FormData(form);
    if (ev.submitter && ev.submitter.name) data.append(ev.submitter.name, ev.submitter.value);
    post(form.getAttribute("action"), new URLSearchParams(data), false).then(function (res) {
      if (res.status !== 200) { say(S.error + (document.documentElement.lang === "fr" ? "\u00a0: " : ": ") + (res.body.error || res.status), false); return; }
      var h = form.closest("section.conflict").querySelector("h3");
      say(S.resolved.replace("{field}", h ? h.textContent : res.body.field).replace("{sheet}", res.body.sheet_id), true);
      settle(group, [res.body.field]);
    });
  });
  document.addEventListener("keydown", function (ev) {
    if (ev.ctrlKey || ev.metaKey || ev.altKey || !/^[1-9]$/.test(ev.key)) return;
    var t = ev.target;
    if (t && (t.tagName === "INPUT" || t.tagName === "SELECT" || t.tagName === "TEXTAREA")) return;
    var group = t && t.closest ? t.closest("section.sheetgroup") : null;
    if (!group) return;
    var b = group.querySelector('button.take-sheet[data-n="' + ev.key + '"]');
    if (b) { ev.preventDefault(); takeSheet(group, b); }
  });
  focusGroup(groups()[0]);
})();

/* Worklist: patients fold, J/K move between items, Shift+J/K between patients, E / N mark the item
   in focus (sent with fetch: no reload, the focus goes on to the next item still to enter). */
(function () {
  "use strict";
  var root = document.getElementById("worklist");
  if (!root) return;
  var csrf = document.querySelector('meta[name="csrf-token"]').getAttribute("content");
  var statusEl = document.getElementById("wl-status");
  function say(text, ok) { statusEl.textContent = text; statusEl.className = ok ? "flash ok" : "flash error"; }
  function items() { return Array.prototype.slice.call(root.querySelectorAll("div.witem")); }
  function patients() { return Array.prototype.slice.call(root.querySelectorAll("details.patient")); }
  function focusItem(it) {
    if (!it) return;
    var d = it.closest("details"); if (d && !d.open) d.open = true;
    it.focus(); it.scrollIntoView({ block: "nearest" });
  }
  function currentItem() { var a = document.activeElement; return a && a.closest ? a.closest("div.witem") : null; }
  function currentPatient() { var a = document.activeElement; return a && a.closest ? a.closest("details.patient") : null; }
  function move(step) {  // through every item: a folded patient opens when the focus reaches it
    var list = items(), cur = currentItem(), i = cur ? list.indexOf(cur) : -1;
    focusItem(list[Math.min(list.length - 1, Math.max(0, i + step))]);
  }
  function movePatient(step) {
    var ps = patients(), cur = currentPatient(), i = cur ? ps.indexOf(cur) : -1;
    var next = ps[Math.min(ps.length - 1, Math.max(0, i + step))];
    if (!next) return;
    if (cur && cur !== next && !cur.contains(document.activeElement.closest("div.witem.pending"))) cur.open = false;
    next.open = true;
    var first = next.querySelector("div.witem.pending") || next.querySelector("div.witem");
    if (first) focusItem(first); else next.querySelector("summary").focus();
  }
  function mark(it, status) {
    var form = it.querySelector("form");
    if (!form) return;
    var button = form.querySelector('button[value="' + status + '"]');
    if (!button || button.disabled) { say(it.querySelector(".badge.warn") ? it.querySelector(".badge.warn").textContent : "", false); return; }
    var data = new URLSearchParams(new FormData(form)); data.append("status", status);
    fetch(form.getAttribute("action"), { method: "POST", credentials: "same-origin", body: data,
      headers: { "X-CSRF-Token": csrf, "Accept": "application/json" } })
      .then(function (r) { return r.json().then(function (b) { return { status: r.status, body: b }; }); })
      .then(function (res) {
        if (res.status !== 200) { say(res.body.error || String(res.status), false); return; }
        var who = it.closest("details").querySelector(".pname");  // in words, not the item's internal id
        say(it.querySelector(".what b").textContent + (who ? " · " + who.textContent : "") + (document.documentElement.lang === "fr" ? "\u00a0: " : ": ") + res.body.done, true);
        it.classList.remove("pending"); it.classList.add(status);
        var acts = it.querySelector(".acts"); acts.textContent = "";
        acts.appendChild(Object.assign(document.createElement("span"), { className: "done", textContent: res.body.done }));
        var p = it.closest("details"), count = p.querySelector(".count");
        if (count) count.textContent = count.textContent.replace(/\d+/, String(p.querySelectorAll("div.witem.pending").length));
        var list = items(), rest = list.slice(list.indexOf(it) + 1).concat(list.slice(0, list.indexOf(it)));
        var next = rest.filter(function (x) { return x.classList.contains("pending"); })[0];
        focusItem(next || it);
      });
  }
  root.addEventListener("submit", function (ev) {
    ev.preventDefault();
    var it = ev.target.closest("div.witem");
    if (it && ev.submitter) mark(it, ev.submitter.value);
  });
  document.addEventListener("keydown", function (ev) {
    if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
    var t = ev.target;
    if (t && (t.tagName === "INPUT" || t.tagName === "SELECT" || t.tagName === "TEXTAREA")) return;
    var k = ev.key;
    if (k === "j" || k === "ArrowDown") { ev.preventDefault(); move(1); }
    else if (k === "k" || k === "ArrowUp") { ev.preventDefault(); move(-1); }
    else if (k === "J") { ev.preventDefault(); movePatient(1); }
    else if (k === "K") { ev.preventDefault(); movePatient(-1); }
    else if ((k === "e" || k === "E" || k === "n" || k === "N") && currentItem()) {
      ev.preventDefault(); mark(currentItem(), k.toLowerCase() === "e" ? "entered" : "not-needed");
    }
  });
  var start = root.querySelector("div.witem.pending") || root.querySelector("div.witem");
  if (start) focusItem(start);
})();

/* Identities: keyboard first. The focus starts on the first suggestion to check (Enter opens the
   check of paper against census), else on the first box for a real MRN. The check opens under its
   row, the link is saved without a page load, the row shows the link and the focus moves on to the
   next unlinked identity. A difference between paper and census still needs its box ticked (the
   server refuses otherwise); Esc closes the check. Without script the same forms load pages. */
(function () {
  "use strict";
  var table = document.getElementById("identities");
  if (!table) return;
  var csrf = document.querySelector('meta[name="csrf-token"]').getAttribute("content");
  var statusEl = document.getElementById("identity-status");
  var busy = false;
  function say(text, ok) { statusEl.textContent = text; statusEl.className = ok ? "flash ok" : "flash error"; statusEl.hidden = false; }
  function firstOf(row) { return row.querySelector("form.suggestion button") || row.querySelector("input[name=real_mrn]"); }
  function focusFrom(row) {  // the next unlinked identity after row (then from the top), else the status line
    var rows = Array.prototype.slice.call(table.querySelectorAll("tr.unlinked"));
    var after = rows.filter(function (r) { return row && (row.compareDocumentPosition(r) & Node.DOCUMENT_POSITION_FOLLOWING); });
    var next = (after.length ? after : rows).map(firstOf).filter(Boolean)[0];
    if (next) { next.focus(); return; }
    statusEl.setAttribute("tabindex", "-1"); statusEl.focus();
  }
  function closeCheck() {
    var open = table.querySelector("tr.checkrow");
    if (open) open.parentNode.removeChild(open);
    return open;
  }
  function showCheck(row, html) {
    closeCheck();
    var tr = document.createElement("tr"), td = document.createElement("td");
    tr.className = "checkrow"; td.colSpan = 4; td.innerHTML = html; tr.appendChild(td);
    row.parentNode.insertBefore(tr, row.nextSibling);
    var f = td.querySelector("#confirm") || td.querySelector("#do-link");
    if (f) f.focus();
  }
  function linked(row, real) {
    row.className = "linked";
    row.cells[2].textContent = real;
    row.cells[3].textContent = "";
  }
  table.addEventListener("submit", function (ev) {
    var form = ev.target, row;
    if (busy) { ev.preventDefault(); return; }
    if (form.id === "link-form") {
      ev.preventDefault();
      row = form.closest("tr.checkrow").previousElementSibling;
      busy = true;
      fetch(form.action, { method: "POST", credentials: "same-origin", body: new FormData(form),
                           headers: { "X-CSRF-Token": csrf, "Accept": "application/json" } })
        .then(function (r) { return r.json().then(function (b) { return { status: r.status, body: b }; }); })
        .then(function (res) {
          busy = false;
          if (res.body.ok) {
            closeCheck(); linked(row, res.body.linked_to); say(res.body.message, true); focusFrom(row);
          } else if (res.body.card) {
            showCheck(row, res.body.card);
          } else {
            say(res.body.error || String(res.status), false); closeCheck(); var f = firstOf(row); if (f) f.focus();
          }
        })
        .catch(function (e) { busy = false; say(String(e), false); });
      return;
    }
    row = form.closest("tr[data-mrn]");
    if (!row || form.method.toLowerCase() !== "get") return;
    ev.preventDefault();
    var q = new URLSearchParams(new FormData(form));
    q.set("part", "1");
    busy = true;
    fetch(form.action + "?" + q.toString(), { credentials: "same-origin" })
      .then(function (r) { return r.text().then(function (t) { return { ok: r.ok, text: t }; }); })
      .then(function (res) {
        busy = false;
        if (res.ok) showCheck(row, res.text);
        else say(new DOMParser().parseFromString(res.text, "text/html").body.textContent.trim().slice(0, 300), false);
      })
      .catch(function (e) { busy = false; say(String(e), false); });
  });
  table.addEventListener("click", function (ev) {  // "back" in the check: close it, the focus back on its row
    var a = ev.target.closest("tr.checkrow a");
    if (!a) return;
    ev.preventDefault();
    var row = closeCheck().previousElementSibling;
    var f = firstOf(row); if (f) f.focus();
  });
  document.addEventListener("keydown", function (ev) {
    if (ev.key !== "Escape") return;
    var open = table.querySelector("tr.checkrow");
    if (!open) return;
    ev.preventDefault();
    var row = open.previousElementSibling; closeCheck();
    var f = firstOf(row); if (f) f.focus();
  });
  var first = table.querySelector("form.suggestion button") || table.querySelector("input[name=real_mrn]");
  if (first) first.focus();
})();
