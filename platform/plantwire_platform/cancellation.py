"""Requests whose client has gone are cancelled.

An ASGI server keeps running a handler after its client disconnected; a handler waiting on a
long query would keep the query running too. :class:`CancelOnDisconnect` reads the request's
messages itself and cancels the handler when ``http.disconnect`` arrives; psycopg then cancels
the query in the server. The handler sees the body as usual, one message at a time.
"""

from __future__ import annotations

import asyncio
import contextlib

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class CancelOnDisconnect:
    """ASGI middleware: cancel an HTTP request's handler when its client disconnects."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        inbox: asyncio.Queue[Message] = asyncio.Queue(maxsize=1)
        handler = asyncio.current_task()
        assert handler is not None
        gone = asyncio.Event()
        done = False

        async def read() -> None:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    gone.set()
                    if not done:
                        handler.cancel()
                    await inbox.put(message)
                    return
                await inbox.put(message)

        reader = asyncio.create_task(read())
        try:
            await self.app(scope, inbox.get, send)
        except asyncio.CancelledError:
            if not gone.is_set():
                raise  # cancelled for another reason: the server is stopping
            handler.uncancel()  # the client is gone: nothing to answer, nobody to tell
        finally:
            done = True
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
