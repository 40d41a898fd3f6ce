"""The container's services as route dependencies: `Depends(Provide["name"])`, filled in by `@inject`.

dependency_injector's own marker is a plain callable, so FastAPI runs it in a worker thread on every request
(a thread hop per dependency: seven on POST /chat/stream). This one is awaited instead: same marker, no thread.
"""

from typing import Self

from dependency_injector import wiring


class Provide(wiring.Provide):  # type: ignore[misc,valid-type]  # noqa: TID251 - the one use
    async def __call__(self) -> Self:  # what FastAPI resolves; `@inject` replaces it with the service
        return self
