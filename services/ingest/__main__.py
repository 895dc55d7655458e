"""Run ingest: ``python -m services.ingest``."""

from services.ingest.app import create_app
from services.ingest.settings import IngestSettings
from shared.logs import configure_logging
from shared.serving import serve
from shared.tracing import configure_tracing

if __name__ == "__main__":
    settings = IngestSettings()
    configure_logging(
        "ingest",
        settings.log_level,
        repeat_limit=settings.log_repeat_limit,
        repeat_window_s=settings.log_repeat_window_s,
    )
    configure_tracing("ingest", settings.otlp_endpoint)
    serve(create_app(settings), settings, host=settings.host, port=settings.port)
