"""API key authentication for REST routes (header `X-API-Key` or `Authorization: Bearer`; the session stream
also `?api_key=`, as an EventSource cannot set headers)."""


from collections.abc import Awaitable, Callable, Mapping
from typing import Annotated

from dependency_injector.wiring import Provide, inject
from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader, APIKeyQuery, HTTPAuthorizationCredentials, HTTPBearer

from dataagent.application import logcontext
from dataagent.application.auth import ApiKeyAuthenticator
from dataagent.domain.errors import ForbiddenError, UnauthorizedError

# Declared in the OpenAPI document only (auto_error=False): the key is checked below, as before.
API_KEY_HEADER = APIKeyHeader(name="X-API-Key", auto_error=False, description="An API key (DATAAGENT_API_KEYS)")
BEARER = HTTPBearer(auto_error=False, description="The same API key as a bearer token")
API_KEY_QUERY = APIKeyQuery(name="api_key", auto_error=False, description="The API key, for a browser EventSource")


def presented_key(headers: Mapping[str, str], query: Mapping[str, str] | None = None) -> str | None:
    """The API key a client presented: X-API-Key, a Bearer token, or (WebSocket only) `api_key`."""
    key = headers.get("x-api-key")
    if key:
        return key
    scheme, _, token = headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    if query is not None:
        return query.get("api_key") or None
    return None


@inject
async def require_principal(
    request: Request,
    authenticator: Annotated[ApiKeyAuthenticator, Depends(Provide["authenticator"])],
    _header: Annotated[str | None, Security(API_KEY_HEADER)] = None,
    _bearer: Annotated[HTTPAuthorizationCredentials | None, Security(BEARER)] = None,
) -> str:
    """The calling principal; 401 unauthorized without a valid key."""
    principal = authenticator.authenticate(presented_key(request.headers))
    if principal is None:
        raise UnauthorizedError()
    logcontext.bind(principal=principal)
    return principal


@inject
async def require_principal_or_query_key(
    request: Request,
    authenticator: Annotated[ApiKeyAuthenticator, Depends(Provide["authenticator"])],
    _header: Annotated[str | None, Security(API_KEY_HEADER)] = None,
    _bearer: Annotated[HTTPAuthorizationCredentials | None, Security(BEARER)] = None,
    _query: Annotated[str | None, Security(API_KEY_QUERY)] = None,
) -> str:
    """Like `require_principal`, with `?api_key=` too (GET /sessions/{id}/stream: a browser EventSource)."""
    principal = authenticator.authenticate(presented_key(request.headers, request.query_params))
    if principal is None:
        raise UnauthorizedError()
    logcontext.bind(principal=principal)
    return principal


def require_scope(scope: str) -> Callable[..., Awaitable[str]]:
    """A dependency: the calling principal if its key holds `scope` (DATAAGENT_KEY_SCOPES); 403 forbidden else."""

    @inject
    async def dependency(
        principal: Annotated[str, Depends(require_principal)],
        authenticator: Annotated[ApiKeyAuthenticator, Depends(Provide["authenticator"])],
    ) -> str:
        if not authenticator.has_scope(principal, scope):
            raise ForbiddenError(f"This API key lacks the {scope!r} scope (DATAAGENT_KEY_SCOPES)")
        return principal

    return dependency
