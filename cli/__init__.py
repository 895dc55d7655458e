"""``switchboard``: the operators' command line (agents, queues, conversations, dead letters,
rules, API keys). It talks to the services over their HTTP APIs and to Kafka, never to their
databases."""
