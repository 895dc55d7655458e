"""Creating topics from their specs on a Kafka cluster."""

from __future__ import annotations

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from cli.topics_file import TopicSpec


async def apply_specs(
    bootstrap: str, specs: list[TopicSpec]
) -> tuple[list[str], list[tuple[str, int, int]]]:
    """(topics created, (topic, partitions it has, partitions wanted) of existing ones that
    differ). Existing topics are left as they are: partitions can only grow, and growing
    them moves keys to other partitions, which an operator decides, not a deploy."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [s for s in specs if s.name not in existing]
        if missing:
            await admin.create_topics(
                [
                    NewTopic(
                        s.name,
                        s.partitions,
                        s.replication_factor or 1,
                        topic_configs=dict(s.configs),
                    )
                    for s in missing
                ]
            )
        differing = []
        present = [s for s in specs if s.name in existing]
        if present:
            described = await admin.describe_topics([s.name for s in present])
            have = {d["topic"]: len(d["partitions"]) for d in described}
            differing = [
                (s.name, have[s.name], s.partitions)
                for s in present
                if have.get(s.name, s.partitions) != s.partitions
            ]
    finally:
        await admin.close()
    return [s.name for s in missing], differing
