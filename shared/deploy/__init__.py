"""Deployment helpers: what compose/ and the container image are generated from or run.

``python -m shared.deploy kafka-init`` writes ``compose/kafka/init.sh`` (SCRAM users, topics,
ACLs) from the plug-ins and ``shared/topics.py``; ``python -m shared.deploy.run LABEL`` is the
image's entrypoint; ``python -m shared.deploy.health`` its health check.
"""
