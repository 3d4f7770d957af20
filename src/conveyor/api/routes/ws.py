"""``/api/ws``: live job events over a WebSocket (protocol in ``conveyor.api.wsproto``)."""

from __future__ import annotations

from fastapi import APIRouter, WebSocket

from conveyor.api.wsproto import Session

router = APIRouter(tags=["events"])


@router.websocket("/api/ws")
async def events(websocket: WebSocket) -> None:
    await Session(websocket.app.state.gateway, websocket).run()
