"""The metrics REST reports and the Prometheus scrape endpoint."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from pydantic import AwareDatetime, BaseModel

from services.metrics.exposition import families, render
from services.metrics.figures import Figures, present, summarize
from services.metrics.store import Filters, MetricsStore
from shared.auth import OPS, PrincipalDep
from shared.events import Channel, Priority, Skill
from shared.problems import BadRequest

router = APIRouter()


class FiguresOut(BaseModel):
    count: int
    mean: float | None
    min: float | None
    max: float | None
    p50: float | None
    p90: float | None
    p95: float | None
    p99: float | None

    @classmethod
    def of(cls, f: Figures) -> FiguresOut:
        return cls(**asdict(f))


class SummaryOut(BaseModel):
    conversations: int
    first_response_s: FiguresOut
    resolution_s: FiguresOut
    queue_wait_s: FiguresOut


@router.get("/v1/metrics/summary", response_model=SummaryOut, tags=["metrics"])
async def summary(
    principal: PrincipalDep,
    request: Request,
    start: Annotated[AwareDatetime | None, Query(alias="from")] = None,
    end: Annotated[AwareDatetime | None, Query(alias="to")] = None,
    channel: Channel | None = None,
    priority: Priority | None = None,
    skill: Skill | None = None,
    language: Annotated[str | None, Query(max_length=20)] = None,
    agent_id: Annotated[str | None, Query(max_length=100)] = None,
) -> SummaryOut:
    """First-response, resolution and queue-wait figures (seconds) of the conversations opened
    in [from, to) that match the filters."""
    principal.require(OPS)
    if start is not None and end is not None and end <= start:
        raise BadRequest("'to' must be later than 'from'")
    filters = Filters(
        start=start,
        end=end,
        channel=channel.value if channel else None,
        priority=priority.value if priority else None,
        skill=skill.value if skill else None,
        language=language,
        agent_id=agent_id,
    )
    async with request.app.state.sessions() as session:
        facts = await MetricsStore(session).facts(filters)
    return SummaryOut(
        conversations=len(facts),
        first_response_s=FiguresOut.of(summarize(present(f.first_response_s for f in facts))),
        resolution_s=FiguresOut.of(summarize(present(f.resolution_s for f in facts))),
        queue_wait_s=FiguresOut.of(summarize(present(f.queue_wait_s for f in facts))),
    )


@router.get("/metrics", tags=["metrics"], response_class=Response)
async def prometheus(principal: PrincipalDep, request: Request) -> Response:
    """Prometheus text exposition of response times and volumes (ops scope)."""
    principal.require(OPS)
    async with request.app.state.sessions() as session:
        store = MetricsStore(session)
        facts = await store.facts(Filters())
        messages = await store.customer_messages_by_channel()
    return Response(
        render(families(facts, messages)), media_type="text/plain; version=0.0.4; charset=utf-8"
    )
