"""The dashboard: `pacswatch serve`, a server-rendered web application (FastAPI, Jinja2, htmx) on
the same database as the command line. It shows what the store holds and sends people's actions
through the same store, cases and outbox as the CLI; it decides nothing the CLI would decide
differently. `app.create_app(settings)` builds it."""
