// zhizao portal: the only script. Reloads a live page every data-refresh-s seconds while it is
// visible (never while someone is typing in a form).
(function () {
  "use strict";
  var s = parseInt(document.body.getAttribute("data-refresh-s") || "", 10);
  if (!(s > 0)) return;
  window.setInterval(function () {
    var a = document.activeElement;
    var typing = a && (a.tagName === "INPUT" || a.tagName === "SELECT" || a.tagName === "TEXTAREA");
    if (document.visibilityState === "visible" && !typing) window.location.reload();
  }, s * 1000);
})();
