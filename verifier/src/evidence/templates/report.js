(function () {
  "use strict";
  window.addEventListener("error", function (e) {
    document.body.dataset.jsError = String(e.message || e);
    console.error("report script error: " + (e.message || e));
  });
  var toggle = document.getElementById("toggle");
  var marked = document.getElementById("marked");
  if (toggle && marked) {
    toggle.addEventListener("click", function () {
      var plain = marked.classList.toggle("plain");
      toggle.textContent = plain ? "Show colours" : "Hide colours";
    });
  }
  document.body.dataset.ready = "1";
})();
