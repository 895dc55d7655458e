"""What the router's routes take from the app: its unit of work and its settings."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from services.router.settings import RouterSettings
from services.router.uow import UnitOfWork


async def _uow(request: Request) -> UnitOfWork:
    uow: UnitOfWork = request.app.state.uow
    return uow


UowDep = Annotated[UnitOfWork, Depends(_uow)]


def router_settings(request: Request) -> RouterSettings:
    settings: RouterSettings = request.app.state.settings
    return settings
