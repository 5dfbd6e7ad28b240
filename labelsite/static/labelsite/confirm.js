// A form with data-confirm asks before it submits (the site's Content-Security-Policy forbids inline handlers).
// Listening on the document also covers forms that htmx swaps in later.
document.addEventListener("submit", (event) => {
  const form = event.target.closest("form[data-confirm]");
  if (form && !window.confirm(form.dataset.confirm)) {
    event.preventDefault();
    event.stopImmediatePropagation();
  }
}, true);
