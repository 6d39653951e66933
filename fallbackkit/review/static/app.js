/* fallbackkit review station: the keyboard-first review screen.
   Enter accepts, digits pick an option, typing transcribes, Tab/Shift+Tab move, Esc skips, Z shows the page.
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
  var current = null, prefetched = null, choice = null, busy = false;

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
  function fetchNext(after) { return getJSON(url("/api/next", "after=" + (after || 0))); }
  function prefetch() {
    prefetched = null;
    if (!current) return;
    var id = current.reading_id;
    fetchNext(id).then(function (d) {
      if (current && current.reading_id === id) {
        prefetched = d;
        if (d.reading && d.reading.crop_url) { new Image().src = d.reading.crop_url; }
      }
    });
  }

  function render(d) {
    box.textContent = "";
    document.getElementById("done").hidden = true;
    if (!d || d.done) { current = null; document.getElementById("done").hidden = false; return; }
    var r = d.reading; current = r; choice = null;
    var c = r.capture || {};
    var meta = el("div", { "class": "meta" }, [
      el("span", {}, [S.ward + " ", el("b", { text: (c.ward || "—") + (c.bed ? " · " + S.bed + " " + c.bed : "") })]),
      el("span", {}, [S.patient + " ", el("b", { text: c.patient_mrn || c.downtime_mrn || "—" })]),
      el("span", {}, [S.sheet + " ", el("b", { text: r.sheet_id }), " · " + (c.template || "") + " " + S.page + " " + (c.page || "?")]),
      el("a", { href: r.page_link, text: S.open_page })
    ]);
    var extra = [];
    if (r.extra && r.extra.medication) extra.push(S.medication + ": " + r.extra.medication);
    if (r.extra && r.extra.scheduled) extra.push(S.scheduled + " " + r.extra.scheduled);
    var head = el("h1", { "class": "fieldname", text: r.field_label + " " }, [el("small", { text: r.field }),
      extra.length ? el("small", { "class": "extra", text: " · " + extra.join(" · ") }) : null]);
    var crop = el("div", { "class": "cropbox" }, [r.crop_url ? el("img", { src: r.crop_url, alt: r.field, id: "crop" }) : el("p", { "class": "empty", text: S.no_image })]);
    var why = el("p", { "class": "why" }, [
      S.why + ": ", el("span", { "class": "badge warn", text: r.reason_text || r.reason || "?" }), "   " + S.machine + ": ",
      el("b", { id: "machine", text: show(r.value) }), "  (" + S.confidence + " " + Math.round((r.confidence || 0) * 100) + "%)"
    ]);
    var raw = el("details", { "class": "raw" }, [el("summary", { text: S.measures }), el("code", { text: JSON.stringify(r.raw) })]);
    var answer = el("div", { "class": "answer", id: "answer" });
    var actions = el("div", { "class": "actions" });
    var accept = el("button", { "class": "primary", id: "accept", type: "button" }, [S.accept + " ", el("kbd", { text: S.enter })]);
    var skip = el("button", { id: "skip", type: "button" }, [S.skip + " ", el("kbd", { text: S.esc })]);
    var illegible = el("button", { id: "illegible", type: "button", text: S.illegible });
    var zoom = el("button", { id: "zoom", type: "button" }, [S.zoom + " ", el("kbd", { text: S.z })]);
    accept.addEventListener("click", function () { decide(false); });
    skip.addEventListener("click", skipItem);
    illegible.addEventListener("click", function () { send("illegible", null); });
    zoom.addEventListener("click", togglePage);
    actions.appendChild(accept); actions.appendChild(skip); actions.appendChild(illegible); actions.appendChild(zoom);

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
      var input = el("input", { "class": "typed", id: "typed", autocomplete: "off", spellcheck: "false", placeholder: S.type_here });
      if (typeof r.value === "string") input.value = r.value;
      if (r.type === "number") input.setAttribute("inputmode", "decimal");
      answer.appendChild(input);
    }
    var hist = null;
    if (r.review) hist = el("p", { "class": "history", text: S.decided_by + " " + r.review.actor + ": " + show(r.review.value) });
    box.appendChild(el("section", { "class": "card", "data-reading": String(r.reading_id) },
      [meta, head, crop, why, raw, answer, actions, hist, el("div", { "class": "pagebox", id: "pagebox", hidden: "" })]));
    var typed = document.getElementById("typed");
    if (typed) { typed.focus(); typed.select(); } else { accept.focus(); }
    prefetch();
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
      body: JSON.stringify({ decision: decision, value: value, seen_review_id: r.review ? r.review.review_id : null })
    }).then(function (resp) {
      return resp.json().then(function (body) { return { status: resp.status, body: body }; });
    }).then(function (res) {
      busy = false;
      if (res.status === 401) { window.location = "/login"; return; }
      if (res.status === 200) { say(S.saved + " ✓ " + r.field_label + " = " + show(decision === "confirm" ? r.value : value)); advance(r.reading_id); }
      else if (res.status === 409) { say(res.body.error, true); advance(r.reading_id); }
      else { say(S.error + ": " + (res.body.error || res.status), true); }
    }).catch(function (e) { busy = false; say(S.error + ": " + e, true); });
  }
  function advance(fromId) {
    var ahead = prefetched && prefetched.reading ? prefetched.reading.reading_id : null;
    if (prefetched && current && current.reading_id === fromId && ahead !== fromId) { render(prefetched); return; }
    fetchNext(fromId).then(function (d) {
      if (d.reading && d.reading.reading_id === fromId) d = { done: true };
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
  }

  document.addEventListener("keydown", function (ev) {
    if (!current || ev.ctrlKey || ev.metaKey || ev.altKey) return;
    var typing = ev.target && ev.target.id === "typed";
    if (ev.key === "Escape") { ev.preventDefault(); skipItem(); return; }
    if (ev.key === "Enter") {
      if (ev.target && ev.target.tagName === "BUTTON" && ev.target.id !== "accept" && !ev.target.classList.contains("opt")) return;
      ev.preventDefault();
      if (ev.target && ev.target.classList && ev.target.classList.contains("opt") && current.type !== "multichoice") {
        pick(parseInt(ev.target.getAttribute("data-index"), 10) - 1); return;
      }
      decide(false); return;
    }
    if (typing) return;
    if (current.options && /^[1-9]$/.test(ev.key)) {
      var i = parseInt(ev.key, 10) - 1;
      if (i < current.options.length) { ev.preventDefault(); pick(i); }
      return;
    }
    if (ev.key === "z" || ev.key === "Z") { ev.preventDefault(); togglePage(); }
  });

  (start ? getJSON("/api/readings/" + start) : fetchNext(0)).then(render);
})();
