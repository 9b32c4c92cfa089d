"""The API's HTTP shell: the FastAPI app, its request context and dependencies, query parameters,
problem details, response schemas and formats, the routes and the dashboard. It reads the store,
calls :mod:`api.core` and turns the answer into HTTP."""
