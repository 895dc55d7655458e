"""What the channel tests share: the channels' secrets, an ingest app that knows them, and the
messages ingest published."""

import json

from fastapi import FastAPI

from services.ingest.app import create_app
from services.ingest.settings import IngestSettings
from tests.conftest import read_topic

TG_SECRET = "tg-secret-token"
META_SECRET = "meta-app-secret"
META_VERIFY = "meta-verify-token"
X_SECRET = "x-consumer-secret"


def channel_ingest(common) -> FastAPI:
    """Ingest with every channel's webhook secret set."""
    return create_app(
        IngestSettings(
            **common,
            telegram_secret_token=TG_SECRET,
            meta_app_secret=META_SECRET,
            meta_verify_token=META_VERIFY,
            x_consumer_secret=X_SECRET,
        )
    )


async def published(broker, topics):
    """Every message on the inbound topic, decoded."""
    return [json.loads(r.value) for r in await read_topic(broker.bootstrap, topics.inbound)]
