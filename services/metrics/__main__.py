"""Run the metrics service: ``python -m services.metrics``."""

from services.metrics.app import create_app
from services.metrics.settings import MetricsSettings
from shared.logs import configure_service_logging
from shared.serving import serve
from shared.tracing import configure_tracing

if __name__ == "__main__":
    settings = MetricsSettings()
    configure_service_logging("metrics", settings)
    configure_tracing("metrics", settings.otlp_endpoint)
    serve(create_app(settings), settings, host=settings.host, port=settings.port)
