"""The analyst's web app at `/` and the API docs at `/docs` and `/redoc`, all served from package data.

Nothing here loads from another host: the app's modules and the vendored libraries (webui/vendor, see its
VENDORED.md) are files of this package. The app's page carries a Content-Security-Policy without inline
script or eval; Vega runs with its CSP-safe expression interpreter.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dataagent import __version__

WEBUI_DIR = Path(__file__).parent / "webui"
VENDOR_URL = "/ui/vendor"
APP_CSP = "; ".join([
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self' 'unsafe-inline'",  # vega-embed and its tooltips set element styles
    "img-src 'self' data: blob:",
    "connect-src 'self'",
    "font-src 'self'",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
])
SECURITY_HEADERS = [
    (b"content-security-policy", APP_CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
]


def install_docs(app: FastAPI) -> None:
    """`/docs` (Swagger UI) and `/redoc` with their assets served by this server (create the app with
    docs_url=None and redoc_url=None)."""
    app.mount(VENDOR_URL, StaticFiles(directory=WEBUI_DIR / "vendor"), name="webui-vendor")
    openapi_url = app.openapi_url or "/openapi.json"

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi_url, title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{VENDOR_URL}/swagger-ui-bundle.js", swagger_css_url=f"{VENDOR_URL}/swagger-ui.css",
            swagger_favicon_url=f"{VENDOR_URL}/favicon.png",
            swagger_ui_parameters={"validatorUrl": None},  # no badge fetched from validator.swagger.io
        )

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url=openapi_url, title=f"{app.title} - ReDoc", redoc_js_url=f"{VENDOR_URL}/redoc.standalone.js",
            redoc_favicon_url=f"{VENDOR_URL}/favicon.png", with_google_fonts=False,
        )


def install_webui(app: FastAPI, auth_disabled: bool) -> None:
    """The single-page app: `/` (its page), `/ui/*` (its modules and styles), `/ui/config` (what the page
    must know before it has a key: whether to ask for one)."""

    @app.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(WEBUI_DIR / "index.html", headers=_headers_dict(), media_type="text/html")

    @app.get("/ui/config", include_in_schema=False)
    async def config() -> JSONResponse:
        return JSONResponse({"auth_disabled": auth_disabled, "version": __version__})

    app.mount("/ui", SecurityHeaders(StaticFiles(directory=WEBUI_DIR)), name="webui")


def _headers_dict() -> dict[str, str]:
    return {name.decode(): value.decode() for name, value in SECURITY_HEADERS}


class SecurityHeaders:
    """Adds the app's CSP and no-sniff headers to every response of the wrapped ASGI app."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
            await send(message)

        await self.app(scope, receive, send_with_headers)
