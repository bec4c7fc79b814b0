from pydeliver_tasks import ns  # noqa: F401  (the deploy tasks: inv --list)
