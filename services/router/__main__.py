"""Run the router: ``python -m services.router``."""

import uvicorn

from services.router.app import create_app
from services.router.settings import RouterSettings
from shared.logs import configure_logging
from shared.tracing import configure_tracing

if __name__ == "__main__":
    settings = RouterSettings()
    configure_logging("router", settings.log_level)
    configure_tracing("router", settings.otlp_endpoint)
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_config=None)
