"use strict";
(function () {
  const table = document.getElementById("subsections");
  const rows = Array.from(table.tBodies[0].rows);
  const details = Array.from(document.querySelectorAll("details.subsection"));
  const verdict = document.getElementById("verdict-filter");
  const search = document.getElementById("search");
  const shown = document.getElementById("shown-count");

  // The table and the evidence below it show the same subsections.
  function applyFilters() {
    const wanted = verdict.value;
    const needle = search.value.trim().toLowerCase();
    function matches(element) {
      return (wanted === "" || element.dataset.verdict === wanted) &&
        (needle === "" || element.dataset.search.includes(needle));
    }
    let count = 0;
    for (const row of rows) {
      row.hidden = !matches(row);
      if (!row.hidden) count += 1;
    }
    for (const detail of details) detail.hidden = !matches(detail);
    shown.textContent = String(count);
  }

  function sortBy(header, index) {
    const ascending = header.getAttribute("aria-sort") !== "ascending";
    for (const th of table.tHead.rows[0].cells) th.removeAttribute("aria-sort");
    header.setAttribute("aria-sort", ascending ? "ascending" : "descending");
    const body = table.tBodies[0];
    const sorted = Array.from(body.rows).sort(function (a, b) {
      const x = a.cells[index].textContent;
      const y = b.cells[index].textContent;
      const order = x.localeCompare(y, undefined, { numeric: true });
      return ascending ? order : -order;
    });
    for (const row of sorted) body.appendChild(row);
  }

  function openDetail(anchor) {
    const detail = document.getElementById(anchor);
    if (!detail || !detail.matches("details.subsection")) return;
    detail.hidden = false;
    detail.open = true;
    detail.scrollIntoView({ block: "start" });
  }

  verdict.addEventListener("change", applyFilters);
  search.addEventListener("input", applyFilters);
  // Sort headers are buttons: a click, Enter or Space sorts.
  Array.from(table.tHead.rows[0].cells).forEach(function (th, index) {
    th.querySelector("button").addEventListener("click", function () { sortBy(th, index); });
  });
  // A row opens its evidence on a click anywhere; its first cell's link does
  // the same from the keyboard, and so do the findings' evidence links.
  for (const row of rows) {
    row.addEventListener("click", function (event) {
      if (event.target.closest("a")) return;
      openDetail(row.dataset.anchor);
    });
  }
  window.addEventListener("hashchange", function () { openDetail(location.hash.slice(1)); });
  for (const link of document.querySelectorAll("a[href^='#sub-']")) {
    link.addEventListener("click", function () { openDetail(link.getAttribute("href").slice(1)); });
  }
  // Printing shows every evidence chain, not only the ones opened.
  window.addEventListener("beforeprint", function () {
    for (const detail of details) detail.open = true;
  });
  if (location.hash.length > 1) openDetail(location.hash.slice(1));
  applyFilters();
})();
