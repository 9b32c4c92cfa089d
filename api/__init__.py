"""The analytics API: pooled series, KPIs and benchmarks under disclosure control, the dashboard and
the audit log (``api.app.create_app`` builds the FastAPI application)."""

__all__: list[str] = []
