"""Run the metrics service: ``python -m services.metrics``."""

import uvicorn

from services.metrics.app import create_app
from services.metrics.settings import MetricsSettings
from shared.logs import configure_logging
from shared.tracing import configure_tracing

if __name__ == "__main__":
    settings = MetricsSettings()
    configure_logging("metrics", settings.log_level)
    configure_tracing("metrics", settings.otlp_endpoint)
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_config=None)
