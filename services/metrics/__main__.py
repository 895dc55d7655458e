"""Run the metrics service: ``python -m services.metrics``."""

from services.metrics.app import create_app
from services.metrics.settings import MetricsSettings
from shared.logs import configure_logging
from shared.serving import serve
from shared.tracing import configure_tracing

if __name__ == "__main__":
    settings = MetricsSettings()
    configure_logging(
        "metrics",
        settings.log_level,
        repeat_limit=settings.log_repeat_limit,
        repeat_window_s=settings.log_repeat_window_s,
    )
    configure_tracing("metrics", settings.otlp_endpoint)
    serve(create_app(settings), settings, host=settings.host, port=settings.port)
