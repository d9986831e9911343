from tests.postgres import postgres_server, postgres_url  # noqa: F401  (fixtures)
