"""Running jobs: dispatched by the API, run in-process (embedded) or by Celery workers."""
