"use strict";
(function () {
  const table = document.getElementById("subsections");
  const rows = Array.from(table.tBodies[0].rows);
  const verdict = document.getElementById("verdict-filter");
  const search = document.getElementById("search");
  const shown = document.getElementById("shown-count");

  function applyFilters() {
    const wanted = verdict.value;
    const needle = search.value.trim().toLowerCase();
    let count = 0;
    for (const row of rows) {
      const visible = (wanted === "" || row.dataset.verdict === wanted) &&
        (needle === "" || row.dataset.search.includes(needle));
      row.hidden = !visible;
      if (visible) count += 1;
    }
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
    if (!detail) return;
    detail.open = true;
    detail.scrollIntoView({ block: "start" });
  }

  verdict.addEventListener("change", applyFilters);
  search.addEventListener("input", applyFilters);
  Array.from(table.tHead.rows[0].cells).forEach(function (th, index) {
    th.addEventListener("click", function () { sortBy(th, index); });
  });
  for (const row of rows) {
    row.addEventListener("click", function () { openDetail(row.dataset.anchor); });
  }
  // Printing shows every evidence chain, not only the ones opened.
  window.addEventListener("beforeprint", function () {
    for (const detail of document.querySelectorAll("details.subsection")) detail.open = true;
  });
  if (location.hash.length > 1) openDetail(location.hash.slice(1));
  applyFilters();
})();
