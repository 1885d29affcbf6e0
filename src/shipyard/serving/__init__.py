"""The online service: the HTTP app that answers prediction requests with the deployed
champion, routes a share of traffic to a canary, mirrors requests to a shadow, and records
every answer in the prediction log (``log``), off the request path.

Modules: ``app`` (routes and the service), ``router`` (champion, shadow, canary, guardrails),
``shadow`` (the challenger's own process), ``schema`` (OpenAPI pieces from the contract),
``metrics`` (Prometheus text), ``log``.
Importing the package loads nothing heavy; import the module you need.
"""

__all__: list[str] = []
