// The reports' script (inlined into every page by shipyard.reports.markup.document):
// sortable tables, then it counts the charts and marks the page ready.
(function () {
  function key(cell) {
    var inner = cell.querySelector("[data-sort]");
    var raw = inner ? inner.getAttribute("data-sort") : cell.textContent;
    var num = parseFloat(raw);
    return isNaN(num) ? raw.toLowerCase() : num;
  }
  document.querySelectorAll("table.sortable").forEach(function (table) {
    table.querySelectorAll("th").forEach(function (th) {
      th.classList.add("sort");
      th.title = "click to sort";
      th.addEventListener("click", function () {
        var body = table.tBodies[0], i = th.cellIndex, up = th.dataset.dir !== "up";
        var rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (a, b) {
          var x = key(a.cells[i]), y = key(b.cells[i]);
          return (x < y ? -1 : x > y ? 1 : 0) * (up ? 1 : -1);
        });
        rows.forEach(function (r) { body.appendChild(r); });
        th.dataset.dir = up ? "up" : "down";
      });
    });
  });
  var charts = document.querySelectorAll("svg.chart").length;
  document.getElementById("chart-count").textContent = charts + " charts";
  document.documentElement.setAttribute("data-ready", "yes");
})();
