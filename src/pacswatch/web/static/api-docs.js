// Starts Swagger UI (vendored in /static/swagger) on the API's schema; no inline script (CSP).
(function () {
  "use strict";
  function start() {
    var el = document.getElementById("swagger-ui");
    if (!el || typeof SwaggerUIBundle === "undefined") { return; }
    SwaggerUIBundle({ url: el.getAttribute("data-schema"), dom_id: "#swagger-ui", deepLinking: false });
  }
  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", start); } else { start(); }
}());
