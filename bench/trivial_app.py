"""The bare-HTTP baseline: a FastAPI endpoint that validates nothing and stores nothing."""

from fastapi import FastAPI, Request

app = FastAPI()


@app.post("/v1/messages", status_code=202)
async def accept(request: Request) -> dict[str, str]:
    await request.body()
    return {"status": "accepted"}
