"""Run ingest: ``python -m services.ingest``."""

import uvicorn

from services.ingest.app import create_app
from services.ingest.settings import IngestSettings
from shared.logs import configure_logging
from shared.tracing import configure_tracing

if __name__ == "__main__":
    settings = IngestSettings()
    configure_logging("ingest", settings.log_level)
    configure_tracing("ingest", settings.otlp_endpoint)
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_config=None)
