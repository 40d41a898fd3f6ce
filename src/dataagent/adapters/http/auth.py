"""API key authentication for REST routes (header `X-API-Key` or `Authorization: Bearer`; the session stream
also `?api_key=`, as an EventSource cannot set headers), and the end user a request names (`X-User-ID`; the
session stream, GET /sessions and the WebSocket also `?user_id=`)."""


from collections.abc import Awaitable, Callable, Mapping
from typing import Annotated

from dependency_injector.wiring import inject
from fastapi import Depends, Header, Query, Request, Security
from fastapi.security import APIKeyHeader, APIKeyQuery, HTTPAuthorizationCredentials, HTTPBearer

from dataagent.adapters.http.injection import Provide
from dataagent.application import logcontext
from dataagent.application.auth import END_USERS, ApiKeyAuthenticator
from dataagent.domain.callers import END_USER_RULE, Caller, validate_end_user
from dataagent.domain.errors import ForbiddenError, InvalidInputError, UnauthorizedError

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


def named_end_user(header: str | None, query: str | None = None) -> str | None:
    """The end user a request names: `X-User-ID`, or `?user_id=` where a browser cannot set the header; both
    given must agree (422 validation_error)."""
    if header is not None and query is not None and header != query:
        raise InvalidInputError("X-User-ID and user_id name different end users")
    return header if header is not None else query


def caller_for(authenticator: ApiKeyAuthenticator, principal: str, end_user: str | None) -> Caller:
    """The principal, acting for `end_user` if one is named: only a key with the `end_users` scope may name one
    (403 forbidden, never ignored); the id must be valid (422 validation_error)."""
    if end_user is None:
        return Caller(principal)
    if not authenticator.has_scope(principal, END_USERS):
        raise ForbiddenError(f"This API key lacks the {END_USERS!r} scope to act for an end user (X-User-ID)")
    return Caller(principal, validate_end_user(end_user))


UserHeader = Annotated[str | None, Header(
    alias="X-User-ID", description=f"the end user the request acts for ({END_USER_RULE}; `end_users` scope)")]
UserQuery = Annotated[str | None, Query(
    alias="user_id", description="the end user, where a browser cannot set X-User-ID (same rules)")]


@inject
async def require_caller(
    principal: Annotated[str, Depends(require_principal)],
    authenticator: Annotated[ApiKeyAuthenticator, Depends(Provide["authenticator"])],
    user: UserHeader = None,
) -> Caller:
    """The calling principal and the end user its X-User-ID names, if any."""
    return caller_for(authenticator, principal, user)


@inject
async def require_caller_naming_user_in_query(
    principal: Annotated[str, Depends(require_principal)],
    authenticator: Annotated[ApiKeyAuthenticator, Depends(Provide["authenticator"])],
    user: UserHeader = None,
    user_query: UserQuery = None,
) -> Caller:
    """Like `require_caller`, with `?user_id=` too (GET /sessions); the key only in a header."""
    return caller_for(authenticator, principal, named_end_user(user, user_query))


@inject
async def require_caller_or_query(
    principal: Annotated[str, Depends(require_principal_or_query_key)],
    authenticator: Annotated[ApiKeyAuthenticator, Depends(Provide["authenticator"])],
    user: UserHeader = None,
    user_query: UserQuery = None,
) -> Caller:
    """Like `require_caller`, with `?api_key=` and `?user_id=` too (GET /sessions/{id}/stream: an EventSource)."""
    return caller_for(authenticator, principal, named_end_user(user, user_query))


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
