"""The web app's routes, the offline API docs and the OpenAPI security schemes, over real HTTP."""

from __future__ import annotations

import re

import pytest

from tests.support import KEY_A, live_server, make_settings

pytestmark = pytest.mark.integration

PROTECTED_SCHEMES = [{"APIKeyHeader": []}, {"HTTPBearer": []}]
FOREIGN_URL = re.compile(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//""", re.IGNORECASE)


async def test_the_app_is_served_at_the_root_with_a_csp_that_forbids_inline_script() -> None:
    async with live_server() as srv, srv.client(key=None) as client:
        page = await client.get("/")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        csp = page.headers["content-security-policy"]
        assert "script-src 'self';" in csp and "unsafe-eval" not in csp and "default-src 'self'" in csp
        assert "<script>" not in page.text and not FOREIGN_URL.search(page.text)
        module = await client.get("/ui/js/main.js")
        assert module.status_code == 200 and "javascript" in module.headers["content-type"]
        assert module.headers["x-content-type-options"] == "nosniff"
        assert (await client.head("/")).status_code == 200
        assert (await client.get("/ui/config")).json()["auth_disabled"] is False
        missing = await client.get("/ui/js/nope.js")
        assert missing.status_code == 404 and missing.json()["error_code"] == "not_found"


async def test_ui_false_turns_the_app_off_but_not_the_docs() -> None:
    async with live_server(make_settings(ui=False)) as srv, srv.client(key=None) as client:
        assert (await client.get("/")).json()["error_code"] == "not_found"
        assert (await client.get("/ui/js/main.js")).status_code == 404
        assert (await client.get("/ui/config")).status_code == 404
        assert (await client.get("/docs")).status_code == 200
        assert (await client.get("/ui/vendor/swagger-ui-bundle.js")).status_code == 200


async def test_the_ui_config_tells_the_page_that_auth_is_disabled() -> None:
    async with live_server(make_settings(auth_disabled=True, api_keys=[])) as srv, srv.client(key=None) as client:
        assert (await client.get("/ui/config")).json()["auth_disabled"] is True


@pytest.mark.parametrize("path", ["/docs", "/redoc"])
async def test_the_docs_load_their_assets_from_this_server(path: str) -> None:
    async with live_server() as srv, srv.client(key=None) as client:
        page = await client.get(path)
        assert page.status_code == 200
        assert not FOREIGN_URL.search(page.text), page.text
        assets = re.findall(r"""(?:src|href)=["'](/[^"']+)["']""", page.text)
        assert assets
        for asset in assets:
            assert (await client.get(asset)).status_code == 200, asset


async def test_the_openapi_document_declares_the_api_key_on_every_protected_route() -> None:
    async with live_server() as srv, srv.client(key=None) as client:
        document = (await client.get("/openapi.json")).json()
        schemes = document["components"]["securitySchemes"]
        header = schemes["APIKeyHeader"]
        assert (header["type"], header["in"], header["name"]) == ("apiKey", "header", "X-API-Key")
        assert schemes["HTTPBearer"]["type"] == "http" and schemes["HTTPBearer"]["scheme"] == "bearer"
        operations = {(m, p): op for p, item in document["paths"].items() for m, op in item.items()}
        assert "security" not in operations[("get", "/api/v1/health")]
        protected = {k: op for k, op in operations.items() if k[1] != "/api/v1/health"}
        # chat, stream, cancel, hitl, 4 session routes, session stream, schema, audit, feedback (3), verified
        # queries (5), metrics
        assert len(protected) == 20
        # an EventSource cannot set headers: the session stream also takes the key as `?api_key=`
        stream = protected.pop(("get", "/api/v1/sessions/{session_id}/stream"))
        assert stream["security"] == PROTECTED_SCHEMES + [{"APIKeyQuery": []}]
        query = schemes["APIKeyQuery"]
        assert (query["type"], query["in"], query["name"]) == ("apiKey", "query", "api_key")
        assert all(op["security"] == PROTECTED_SCHEMES for op in protected.values())
        assert not any(p in ("/", "/docs", "/redoc") or p.startswith("/ui") for p in document["paths"])


async def test_auth_behaves_as_before_with_either_scheme() -> None:
    async with live_server() as srv, srv.client(key=None) as client:
        missing = await client.get("/api/v1/sessions")
        assert missing.status_code == 401 and missing.headers["www-authenticate"] == "ApiKey"
        assert missing.json()["error_code"] == "unauthorized"
        assert (await client.get("/api/v1/sessions", headers={"Authorization": "Basic abc"})).status_code == 401
        assert (await client.get("/api/v1/sessions", headers={"Authorization": "Bearer"})).status_code == 401
        assert (await client.get("/api/v1/sessions", headers={"X-API-Key": "wrong"})).status_code == 401
        assert (await client.get("/api/v1/sessions", headers={"X-API-Key": KEY_A})).status_code == 200
        assert (await client.get("/api/v1/sessions", headers={"Authorization": f"Bearer {KEY_A}"})).status_code == 200
        # a key in a URL ends up in histories and proxies' logs: only the EventSource's session stream takes it
        assert (await client.get("/api/v1/sessions", params={"api_key": KEY_A})).status_code == 401
        assert (await client.get("/api/v1/health")).status_code == 200
