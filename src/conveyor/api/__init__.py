"""The API gateway: FastAPI app factory, uvicorn runner, CLI commands.

    from conveyor.api import create_app, serve
    app = create_app(conveyor)                 # an ASGI app
    await serve(conveyor, "0.0.0.0", 8000)     # or run it in this event loop
"""

from conveyor.api.factory import create_app
from conveyor.api.server import ApiServer, serve
from conveyor.api.settings import ApiSettings

__all__ = ["ApiServer", "ApiSettings", "create_app", "serve"]
