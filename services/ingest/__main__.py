"""Run ingest: ``python -m services.ingest``."""

from services.ingest.app import create_app
from services.ingest.settings import IngestSettings
from shared.logs import configure_service_logging
from shared.serving import serve
from shared.tracing import configure_tracing

if __name__ == "__main__":
    settings = IngestSettings()
    configure_service_logging("ingest", settings)
    configure_tracing("ingest", settings.otlp_endpoint)
    serve(create_app(settings), settings, host=settings.host, port=settings.port)
