"""The metrics REST reports and the Prometheus scrape endpoint."""

from __future__ import annotations

import base64
import binascii
import uuid
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from services.metrics.exposition import aggregates, families, render
from services.metrics.figures import Figures
from services.metrics.live_store import LiveStore
from services.metrics.report import Clock, Filters, ReportRow
from services.metrics.report_cache import ReportCache
from services.metrics.scrape_store import ScrapeStore
from services.metrics.sla_store import SlaStore
from services.metrics.store import MetricsStore
from shared.auth import INGEST, OPS, PrincipalDep
from shared.events import Channel, CustomerTier, Priority, Skill
from shared.params import CommaSeparated
from shared.problems import BadRequest, Conflict, NotFound

router = APIRouter()

Dimension = Literal["channel", "priority", "skill", "language", "agent_id", "customer_tier", "team"]
ClockParam = Annotated[
    Clock,
    Query(description="calendar: wall-clock seconds; business: seconds within opening hours"),
]


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


class FigureSet(BaseModel):
    """Every figure of a set of conversations (times in seconds)."""

    conversations: int
    first_response_s: FiguresOut
    next_reply_s: FiguresOut
    resolution_s: FiguresOut
    queue_wait_s: FiguresOut
    reassignments_mean: float | None
    messages_per_conversation_mean: float | None
    sla_first_response_attainment: float | None
    sla_resolution_attainment: float | None
    csat_count: int
    csat_mean: float | None

    @classmethod
    def of(cls, row: ReportRow | None) -> FigureSet:
        empty = Figures(0, None, None, None, None, None, None, None)
        measures = row.measures if row else {}
        extra = row.extra if row else {}
        return cls(
            conversations=row.conversations if row else 0,
            first_response_s=FiguresOut.of(measures.get("first_response_s", empty)),
            next_reply_s=FiguresOut.of(measures.get("next_reply_s", empty)),
            resolution_s=FiguresOut.of(measures.get("resolution_s", empty)),
            queue_wait_s=FiguresOut.of(measures.get("queue_wait_s", empty)),
            reassignments_mean=row.reassignments_mean if row else None,
            messages_per_conversation_mean=row.messages_mean if row else None,
            sla_first_response_attainment=extra.get("sla_first_response_attainment"),
            sla_resolution_attainment=extra.get("sla_resolution_attainment"),
            csat_count=int(extra.get("csat_count") or 0),
            csat_mean=extra.get("csat_mean"),
        )


class ReachOut(BaseModel):
    """Where the figures came from: the columns held in memory cover conversations opened
    from ``window_start`` on (null: all history); a report reaching before it read those
    from PostgreSQL for itself (slower, as exact)."""

    window_start: datetime | None
    read_from_postgres: bool


class GroupOut(FigureSet):
    group: dict[str, str | None]


class SummaryOut(FigureSet):
    clock: Clock
    groups: list[GroupOut]
    reach: ReachOut


class BucketOut(FigureSet):
    start: datetime
    group: dict[str, str | None]


class TimeseriesOut(BaseModel):
    interval: str
    clock: Clock
    buckets: list[BucketOut]
    reach: ReachOut


async def report_filters(
    start: Annotated[AwareDatetime | None, Query(alias="from")] = None,
    end: Annotated[AwareDatetime | None, Query(alias="to")] = None,
    channel: Channel | None = None,
    priority: Priority | None = None,
    skill: Skill | None = None,
    language: Annotated[str | None, Query(max_length=20)] = None,
    agent_id: Annotated[str | None, Query(max_length=100)] = None,
    customer_tier: CustomerTier | None = None,
    team: Annotated[str | None, Query(max_length=50)] = None,
) -> Filters:
    """Conversations opened in [from, to) matching every given filter."""
    if start is not None and end is not None and end <= start:
        raise BadRequest("'to' must be later than 'from'")
    return Filters(
        start=start,
        end=end,
        channel=channel.value if channel else None,
        priority=priority.value if priority else None,
        skill=skill.value if skill else None,
        language=language,
        agent_id=agent_id,
        customer_tier=customer_tier.value if customer_tier else None,
        team=team,
    )


FiltersDep = Annotated[Filters, Depends(report_filters)]


def report_cache(request: Request) -> ReportCache:
    return request.app.state.reports  # type: ignore[no-any-return]


ReportsDep = Annotated[ReportCache, Depends(report_cache)]
GroupBy = Annotated[
    list[Dimension],
    CommaSeparated,
    Query(description="dimensions to group by: repeated, or comma-separated (channel,priority)"),
]


@router.get("/v1/metrics/summary", response_model=SummaryOut, tags=["metrics"])
async def summary(
    principal: PrincipalDep,
    reports: ReportsDep,
    filters: FiltersDep,
    group_by: GroupBy = [],  # noqa: B006
    clock: ClockParam = "calendar",
) -> SummaryOut:
    """First-response (every episode), next-reply, resolution and queue-wait figures (count,
    mean, min, max, exact p50/p90/p95/p99), reassignments and messages per conversation,
    overall and per group, in calendar or business time."""
    principal.require(OPS)
    total, groups = await reports.summary(
        filters, group_by=tuple(dict.fromkeys(group_by)), clock=clock
    )
    return SummaryOut(
        **FigureSet.of(total).model_dump(),
        clock=clock,
        groups=[GroupOut(group=row.group, **FigureSet.of(row).model_dump()) for row in groups],
        reach=ReachOut(**asdict(reports.reach(filters))),
    )


@router.get("/v1/metrics/timeseries", response_model=TimeseriesOut, tags=["metrics"])
async def timeseries(
    principal: PrincipalDep,
    reports: ReportsDep,
    filters: FiltersDep,
    interval: Literal["5m", "1h", "1d"] = "1h",
    group_by: GroupBy = [],  # noqa: B006
    clock: ClockParam = "calendar",
) -> TimeseriesOut:
    """The same figures per time bucket of the conversations' opening time."""
    principal.require(OPS)
    rows = await reports.report(
        filters,
        group_by=tuple(dict.fromkeys(group_by)),
        interval=interval,
        clock=clock,
    )
    return TimeseriesOut(
        interval=interval,
        clock=clock,
        buckets=[
            BucketOut(start=row.bucket, group=row.group, **FigureSet.of(row).model_dump())
            for row in rows
        ],
        reach=ReachOut(**asdict(reports.reach(filters))),
    )


@router.get("/metrics", tags=["metrics"], response_class=Response)
async def prometheus(principal: PrincipalDep, request: Request) -> Response:
    """Prometheus text exposition of response times and volumes (ops scope)."""
    principal.require(OPS)
    async with request.app.state.sessions() as session:
        live = LiveStore(session)
        histograms, counts, breaches = aggregates(await ScrapeStore(session).counts())
        queues = await live.queues(datetime.now(UTC))
        agents = await live.agents()
    return Response(
        render(families(histograms, counts, breaches, queues, agents)),
        media_type="text/plain; version=0.0.4; charset=utf-8",
    )


class PolicyIn(BaseModel):
    """The targets of one priority on one channel; a PUT replaces the previous ones."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"first_response_target_s": 300, "resolution_target_s": 14400}]
        },
    )
    first_response_target_s: float = Field(
        gt=0,
        le=30 * 86400,
        description="seconds from the first customer message of an episode (the conversation "
        "as opened, and again after each reopen) to the first agent reply; at most 30 days",
    )
    resolution_target_s: float = Field(
        gt=0,
        le=365 * 86400,
        description="seconds from opened to resolved (after a reopen, the latest resolution); "
        "at most 365 days",
    )


class PolicyOut(PolicyIn):
    priority: Priority
    channel: str


@router.put("/v1/sla-policies/{priority}/{channel}", response_model=PolicyOut, tags=["sla"])
async def put_policy(
    priority: Priority,
    channel: Annotated[str, Path(pattern=r"^(\*|chat|email|form|telegram|messenger|whatsapp|x)$")],
    body: PolicyIn,
    principal: PrincipalDep,
    request: Request,
) -> PolicyOut:
    """Set the first-response and resolution targets of a priority on a channel ('*': any
    channel without its own policy)."""
    principal.require(OPS)
    async with request.app.state.sessions() as session, session.begin():
        await SlaStore(session).put_policy(
            priority.value, channel, body.first_response_target_s, body.resolution_target_s
        )
    return PolicyOut(priority=priority, channel=channel, **body.model_dump())


@router.get("/v1/sla-policies", response_model=list[PolicyOut], tags=["sla"])
async def get_policies(principal: PrincipalDep, request: Request) -> list[PolicyOut]:
    principal.require(OPS)
    async with request.app.state.sessions() as session:
        return [PolicyOut(**p) for p in await SlaStore(session).policies()]


class AtRiskOut(BaseModel):
    conversation_id: uuid.UUID
    channel: str
    priority: str | None
    agent_id: str | None
    first_message_at: datetime
    target_s: float
    elapsed_s: float
    time_left_s: float


@router.get("/v1/sla/at-risk", response_model=list[AtRiskOut], tags=["sla"])
async def at_risk(
    principal: PrincipalDep,
    request: Request,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[AtRiskOut]:
    """Live conversations awaiting a first response, least time left first (negative: breached)."""
    principal.require(OPS)
    async with request.app.state.sessions() as session:
        rows = await SlaStore(session).at_risk(datetime.now(UTC), limit=limit)
    return [AtRiskOut(**r) for r in rows]


class CsatIn(BaseModel):
    """A customer's satisfaction with a resolved conversation."""

    model_config = ConfigDict(
        extra="forbid",
        str_strip_whitespace=True,
        json_schema_extra={"examples": [{"score": 4, "comment": "quick and friendly"}]},
    )
    score: int = Field(ge=1, le=5, description="1 (very unhappy) to 5 (very happy)")
    comment: str | None = Field(
        default=None, max_length=2000, description="the customer's words, kept with the score"
    )


@router.post("/v1/conversations/{conversation_id}/csat", status_code=204, tags=["csat"])
async def post_csat(
    conversation_id: uuid.UUID, body: CsatIn, principal: PrincipalDep, request: Request
) -> Response:
    """A customer's satisfaction score (1-5) for a resolved conversation; a new score replaces
    the previous one (integrators: ingest scope)."""
    principal.require(INGEST, OPS)
    async with request.app.state.sessions() as session, session.begin():
        outcome = await MetricsStore(session).put_csat(
            conversation_id, body.score, body.comment, datetime.now(UTC)
        )
    if outcome == "unknown":
        raise NotFound(f"conversation {conversation_id} is not known to metrics")
    if outcome == "unresolved":
        raise Conflict(f"conversation {conversation_id} is not resolved yet")
    return Response(status_code=204)


class QueueOut(BaseModel):
    channel: str
    priority: str
    skill: str | None  # None: not classified yet
    language: str | None
    depth: int
    oldest_wait_s: float = Field(description="age in the queue of its oldest conversation")
    stuck: int = Field(
        default=0,
        description="of depth, those still waiting after their last overflow stage "
        "(the rules file's overflow): nothing widens them any more",
    )


@router.get("/v1/live/queues", response_model=list[QueueOut], tags=["live"])
async def live_queues(principal: PrincipalDep, request: Request) -> list[QueueOut]:
    """Conversations in the router's queue now, per channel, priority, skill and language,
    with the oldest one's age in the queue (the router's ``/v1/queues`` split by channel)."""
    principal.require(OPS)
    async with request.app.state.sessions() as session:
        return [QueueOut(**q) for q in await LiveStore(session).queues(datetime.now(UTC))]


class AgentOut(BaseModel):
    agent_id: str
    status: str
    team: str | None
    capacity: dict[str, int]
    load: dict[str, int]
    status_since: datetime | None


@router.get("/v1/live/agents", response_model=list[AgentOut], tags=["live"])
async def live_agents(
    principal: PrincipalDep,
    request: Request,
    response: Response,
    limit: Annotated[int, Query(ge=1, le=1000, description="agents per page")] = 500,
    cursor: Annotated[
        str | None, Query(max_length=400, description="the previous page's next link's cursor")
    ] = None,
) -> list[AgentOut]:
    """Agents the router announced, in id order: status, team, capacity and load (the
    conversations whose slot it holds now, offered or assigned) per channel. A
    ``Link: <...>; rel="next"`` header points to the next page."""
    principal.require(OPS)
    after = _after(cursor) if cursor is not None else ""
    async with request.app.state.sessions() as session:
        rows = await LiveStore(session).agents(after=after, limit=limit + 1)
    page = rows[:limit]
    if len(rows) > limit:
        cursor = base64.urlsafe_b64encode(page[-1]["agent_id"].encode()).decode()
        url = request.url.include_query_params(cursor=cursor, limit=limit)
        response.headers["Link"] = f'<{url.path}?{url.query}>; rel="next"'
    return [
        AgentOut(
            agent_id=r["agent_id"],
            status=r["status"],
            team=r["team"],
            capacity=r["capacity"],
            load=r["load"],
            status_since=r["status_at"],
        )
        for r in page
    ]


def _after(cursor: str) -> str:
    """The agent id a cursor of live_agents holds (opaque to clients)."""
    try:
        return base64.b64decode(cursor, altchars=b"-_", validate=True).decode()
    except (binascii.Error, ValueError) as exc:
        raise BadRequest("the cursor is not one this API gave") from exc
