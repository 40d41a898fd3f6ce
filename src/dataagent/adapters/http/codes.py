"""WebSocket close codes (PROTOCOL.md), beside the error table of errors.py: what each refusal or end closes with.

1012 (service restart) and 1001 (going away) are uvicorn's own on shutdown; the server never sends them itself.
"""

CLOSE_BAD_SESSION = 4400  # the path holds no valid session id, or X-User-ID / user_id no valid end user id
CLOSE_UNAUTHORIZED = 4401  # no valid API key
CLOSE_FORBIDDEN = 4403  # forbidden: an end user named (X-User-ID, user_id) by a key without the end_users scope
CLOSE_NOT_FOUND = 4404  # session_not_found: another principal's id, or the session was deleted or expired
CLOSE_SLOW_CONSUMER = 4008  # the send buffer overflowed: reconnect with after_seq
CLOSE_TRY_AGAIN = 1013  # at capacity, or the store or broker unavailable
CLOSE_TOO_BIG = 1009  # a client frame over DATAAGENT_MAX_FRAME_BYTES
