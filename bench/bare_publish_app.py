"""The bare publishing baseline of the ingest-http bench: a FastAPI endpoint that parses the
JSON body and publishes it (acks=all, send_and_wait) to the same broker and topic as ingest,
and nothing else: no keys, validation, language detection or text guard."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiokafka import AIOKafkaProducer
from fastapi import FastAPI, Request

TOPIC = os.environ.get("BENCH_TOPIC", "bench.bare")


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    producer = AIOKafkaProducer(
        bootstrap_servers=os.environ["BENCH_BOOTSTRAP"], acks="all", linger_ms=1
    )
    await producer.start()
    app.state.producer = producer
    try:
        yield
    finally:
        await producer.stop()


app = FastAPI(lifespan=lifespan)


@app.post("/v1/messages", status_code=202)
async def accept(request: Request) -> dict[str, str]:
    body = await request.body()
    message = json.loads(body)
    key = f"{message['channel']}:{message['conversation_ref']}".encode()
    producer: AIOKafkaProducer = request.app.state.producer
    await producer.send_and_wait(TOPIC, body, key=key)
    return {"channel_message_id": message["channel_message_id"]}
