"""The distributed mode: syncs as Celery tasks on a Redis broker, one per (connection, stream).

Nothing here is imported by the embedded default (`crm-engine sync`, `make demo`): the CLI
finds `worker`, `enqueue` and `beat` through entry points, and only their handlers load Celery
and Redis. docs/deployment.md describes the processes and what each failure costs.

  settings.py  what a deployment sets in the environment (Redis URL, timeouts)
  shared.py    state in Redis besides the broker: a lock per unit, a lock per token refresh,
               the units already done; and the rate budgets (engine.ratelimit.redis_budget)
  units.py     the units of a project file, and running one of them
  worker.py    the Celery app, its task and the beat schedule (the only module importing celery)
  commands.py  `crm-engine worker | enqueue | beat`
"""
