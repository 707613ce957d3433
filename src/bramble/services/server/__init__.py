"""bramble-server: beacon, node registry, health checks, telemetry, job dispatch, REST API."""
