// Keyboard-first labelling: number keys score or choose (radios carry data-digit), each yes/no question
// toggles with its letter (checkboxes carry data-shortcut; n = nice), s = skip, g = guidelines,
// h = recent items, Backspace = reopen the judgment just submitted, Ctrl+Enter = submit.
// The page derives these keys from the campaign's questions.
// Drafts live in localStorage (per item code) until the server has the judgment; visible time per item
// is measured here and sent with the form. Everything degrades to a plain form post without this file.
(function () {
  "use strict";
  var DRAFT_PREFIX = "labelsite:draft:";
  var SUBMITTED_KEY = "labelsite:submitted";
  var state = { form: null, code: null, visibleMs: 0, shownAt: null, activeQuestion: null };

  function now() { return window.performance ? performance.now() : Date.now(); }

  function startClock() {
    state.visibleMs = 0;
    state.shownAt = document.visibilityState === "hidden" ? null : now();
  }
  function elapsed() {
    return Math.round(state.visibleMs + (state.shownAt === null ? 0 : now() - state.shownAt));
  }
  document.addEventListener("visibilitychange", function () {
    if (document.visibilityState === "hidden" && state.shownAt !== null) {
      state.visibleMs += now() - state.shownAt;
      state.shownAt = null;
    } else if (document.visibilityState === "visible" && state.shownAt === null) {
      state.shownAt = now();
    }
  });

  function isTyping(el) {
    if (!el) return false;
    var tag = el.tagName;
    return tag === "TEXTAREA" || (tag === "INPUT" && /^(text|search|number|email|url)$/.test(el.type)) || el.isContentEditable;
  }

  // --- drafts -------------------------------------------------------------------------------------
  function readForm(form) {
    var data = {};
    Array.prototype.forEach.call(form.elements, function (el) {
      if (!el.name || el.type === "hidden" || el.name === "csrfmiddlewaretoken") return;
      if (el.type === "radio") { if (el.checked) data[el.name] = el.value; }
      else if (el.type === "checkbox") data[el.name] = el.checked;
      else data[el.name] = el.value;
    });
    return data;
  }
  function writeForm(form, data) {
    Array.prototype.forEach.call(form.elements, function (el) {
      if (!el.name || !(el.name in data) || el.type === "hidden") return;
      if (el.type === "radio") el.checked = String(data[el.name]) === el.value;
      else if (el.type === "checkbox") el.checked = !!data[el.name];
      else el.value = data[el.name];
    });
  }
  function saveDraft() {
    if (!state.form) return;
    try {
      localStorage.setItem(DRAFT_PREFIX + state.code, JSON.stringify({ savedAt: Date.now(), data: readForm(state.form) }));
      setDraftState("Draft saved in this browser");
    } catch (e) { setDraftState("Could not save a draft (browser storage is full or disabled)"); }
  }
  function dropDraft(code) { try { localStorage.removeItem(DRAFT_PREFIX + code); } catch (e) { /* storage off */ } }
  function setDraftState(text) {
    var el = document.querySelector("#workspace .draft-state");
    if (el) el.textContent = text;
  }
  function restoreDraft(workspace) {
    var raw;
    try { raw = localStorage.getItem(DRAFT_PREFIX + state.code); } catch (e) { return; }
    if (!raw) return;
    var draft;
    try { draft = JSON.parse(raw); } catch (e) { dropDraft(state.code); return; }
    // A judgment saved on the server after the draft wins over the draft.
    var serverSeconds = parseInt(workspace.dataset.updated || "0", 10);
    if (workspace.dataset.status === "done" && serverSeconds * 1000 >= draft.savedAt) { dropDraft(state.code); return; }
    writeForm(state.form, draft.data || {});
    setDraftState("Restored your unsent draft");
  }

  // --- scoring --------------------------------------------------------------------------------------
  function questionOf(el) { return el && el.closest ? el.closest("fieldset.question") : null; }
  function questions() { return state.form ? state.form.querySelectorAll("fieldset.question") : []; }
  function targetQuestion() {
    var q = questionOf(document.activeElement) || state.activeQuestion;
    if (q && document.contains(q)) return q;
    var all = questions();
    for (var i = 0; i < all.length; i++) if (unanswered(all[i])) return all[i];
    return all[0] || null;
  }
  // A question group may hold several radio groups (say, a score and a choice): the one with the focus,
  // else the first still unanswered, else the first.
  function radioGroups(question) { return question.querySelectorAll("[role=radiogroup]"); }
  function unanswered(question) {
    var groups = radioGroups(question);
    for (var i = 0; i < groups.length; i++) if (!groups[i].querySelector("input[type=radio]:checked")) return groups[i];
    return null;
  }
  function radioGroupOf(question) {
    var active = document.activeElement;
    var focused = active && active.closest ? active.closest("[role=radiogroup]") : null;
    if (focused && question.contains(focused)) return focused;
    return unanswered(question) || radioGroups(question)[0] || null;
  }
  function score(question, digit) {
    var group = radioGroupOf(question);
    var radio = group && group.querySelector('input[type=radio][data-digit="' + digit + '"]');
    if (!radio) return false;
    radio.checked = true;
    radio.dispatchEvent(new Event("change", { bubbles: true }));
    question.classList.add("scored");
    saveDraft();
    return true;
  }
  function focusScores(question) {
    var radio = question.querySelector("input[type=radio]:checked") || question.querySelector("input[type=radio]");
    if (radio) radio.focus();
  }

  // After scoring from the keyboard, go on: next question's text box, or the submit button after the last.
  function advanceFrom(question) {
    var all = Array.prototype.slice.call(questions());
    var next = all[all.indexOf(question) + 1];
    var target = next ? next.querySelector("textarea, input[type=radio]") : state.form.querySelector("button[type=submit]");
    if (target) target.focus();
  }

  function submitJudgment() {
    if (!state.form) return;
    if (state.form.requestSubmit) state.form.requestSubmit(); else state.form.submit();
  }

  // The keyboard help, opened where the labeller can see it (it sits below the panels) or closed again.
  function toggleHelp() {
    var k = document.getElementById("keys");
    if (!k) return false;
    k.open = !k.open;
    if (k.open) {
      k.scrollIntoView({ block: "nearest" });
      k.querySelector("summary").focus({ preventScroll: true });
    }
    return true;
  }

  // "?" is help, unless it is part of what is being typed: in a text box it opens help only while the box is
  // empty; Alt+/ opens it from anywhere.
  function wantsHelp(event, typing) {
    if (event.altKey && !event.ctrlKey && !event.metaKey && (event.code === "Slash" || event.key === "/")) return true;
    if (event.key !== "?" || event.ctrlKey || event.metaKey || event.altKey) return false;
    return !typing || !event.target.value;
  }

  function onKey(event) {
    if (!state.form || event.defaultPrevented) return;
    var target = event.target;
    if (wantsHelp(event, isTyping(target)) && toggleHelp()) {
      event.preventDefault();
      return;
    }
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      if (target.closest && target.closest("form.skip-form")) return; // Enter there submits the skip
      event.preventDefault();
      submitJudgment();
      return;
    }
    var digit = /^Digit(\d)$/.exec(event.code || "");
    if (isTyping(target)) {
      if (target.id === "id_skip_reason") {
        if (event.key === "Escape") { target.closest("details").open = false; focusFirst(); }
        return;
      }
      if (digit && event.altKey && questionOf(target)) {
        event.preventDefault();
        if (score(questionOf(target), digit[1])) advanceFrom(questionOf(target));
      } else if (event.key === "Escape" && questionOf(target)) {
        event.preventDefault();
        focusScores(questionOf(target));
      }
      return;
    }
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    if (digit) {
      var q = targetQuestion();
      if (q && score(q, digit[1])) {
        event.preventDefault();
        if (questionOf(document.activeElement) === q) advanceFrom(q);
      }
      return;
    }
    var toggle = event.key.length === 1 && /^[a-z]$/.test(event.key) &&
      state.form.querySelector('input[type=checkbox][data-shortcut="' + event.key + '"]');
    if (toggle) {
      event.preventDefault();
      toggle.checked = !toggle.checked;
      saveDraft();
    } else if (event.key === "s") {
      var skip = document.querySelector("#workspace details.skip");
      if (skip) {
        event.preventDefault();
        skip.open = true;
        skip.querySelector("#id_skip_reason").focus();
      }
    } else if (event.key === "g") {
      var g = document.getElementById("guidelines");
      if (g) { event.preventDefault(); g.open = !g.open; }
    } else if (event.key === "Backspace") {
      // Reopen the judgment just submitted (then carry on labelling after saving it).
      var previous = document.getElementById("workspace").dataset.previous;
      if (previous) { event.preventDefault(); location.assign(previous); }
    } else if (event.key === "h") {
      var r = document.getElementById("recent");
      if (r) { event.preventDefault(); r.open = !r.open; if (r.open) { var a = r.querySelector("a"); if (a) a.focus(); } }
    }
  }

  function focusFirst() {
    var first = state.form && state.form.querySelector("fieldset.question textarea");
    if (first) first.focus({ preventScroll: true }); // the item opens at the top of the page
  }

  // Tab goes from answer to answer: the panels (scrollable boxes, which browsers make focusable), their links
  // and folded sections are left to the mouse and the scroll wheel.
  function keepTabOnAnswers(workspace) {
    var inside = workspace.querySelectorAll(
      ".dashboard-panel, .dashboard a[href], .dashboard summary, .dashboard button, .dashboard [tabindex]");
    Array.prototype.forEach.call(inside, function (el) { el.setAttribute("tabindex", "-1"); });
  }

  function init() {
    var workspace = document.getElementById("workspace");
    var form = workspace && workspace.querySelector("form.judgment");
    if (!form) { state.form = null; return; }
    var previous = null;
    try { previous = sessionStorage.getItem(SUBMITTED_KEY); } catch (e) { /* storage off */ }
    // A plain (non-HTMX) submit that moved on to another item means the server has the judgment.
    if (previous && previous !== form.dataset.item) dropDraft(previous);
    try { sessionStorage.removeItem(SUBMITTED_KEY); } catch (e) { /* storage off */ }
    var sameItem = state.code === form.dataset.item;
    state.form = form;
    state.code = form.dataset.item;
    state.activeQuestion = null;
    restoreDraft(workspace);
    keepTabOnAnswers(workspace);
    if (!sameItem) { startClock(); window.scrollTo(0, 0); } // a re-render with errors keeps counting and its place
    form.addEventListener("input", saveDraft);
    form.addEventListener("change", saveDraft);
    form.addEventListener("focusin", function (e) { var q = questionOf(e.target); if (q) state.activeQuestion = q; });
    form.addEventListener("submit", function () {
      var t = form.querySelector("input[name=time_spent_ms]");
      if (t) t.value = String(elapsed());
      saveDraft();
      try { sessionStorage.setItem(SUBMITTED_KEY, state.code); } catch (e) { /* storage off */ }
    });
    Array.prototype.forEach.call(questions(), function (q) {
      if (q.querySelector("input[type=radio]:checked")) q.classList.add("scored");
    });
    focusFirst();
  }

  document.addEventListener("keydown", onKey);
  // HTMX swapped in the next item (or the same one again, with errors).
  document.addEventListener("htmx:afterSwap", function () {
    var old = state.code;
    init();
    if (old && state.code && old !== state.code) dropDraft(old);
  });
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
