"""Run the router: ``python -m services.router``."""

from services.router.app import create_app
from services.router.settings import RouterSettings
from shared.logs import configure_service_logging
from shared.serving import serve
from shared.tracing import configure_tracing

if __name__ == "__main__":
    settings = RouterSettings()
    configure_service_logging("router", settings)
    configure_tracing("router", settings.otlp_endpoint)
    serve(create_app(settings), settings, host=settings.host, port=settings.port)
