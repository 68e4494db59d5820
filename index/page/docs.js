// Starts Swagger UI on the /docs page (docs.html) over the service's own OpenAPI schema.
//
// A file, not an inline <script>: the page's Content-Security-Policy runs only scripts the
// service serves itself. The options are FastAPI's defaults for its Swagger UI page, plus
// validatorUrl: null, which stops Swagger UI from asking validator.swagger.io for a badge.
"use strict";

window.addEventListener("DOMContentLoaded", () => {
  window.ui = SwaggerUIBundle({
    url: "/openapi.json",
    dom_id: "#swagger-ui",
    layout: "BaseLayout",
    deepLinking: true,
    showExtensions: true,
    showCommonExtensions: true,
    validatorUrl: null,
    presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset],
  });
});
