"""What more than one Switchboard service needs: events, settings, Kafka, database, auth,
problems."""
