// Starts Swagger UI on the API docs page.  A file rather than an inline script, so the
// Content-Security-Policy can forbid inline script everywhere.
(function () {
  "use strict";
  const root = document.getElementById("swagger-ui");
  if (!root || typeof SwaggerUIBundle !== "function") return;
  window.ui = SwaggerUIBundle({
    url: root.dataset.openapiUrl,
    dom_id: "#swagger-ui",
    deepLinking: true,
    validatorUrl: null, // the public validator is another host: never contact it
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
  });
})();
