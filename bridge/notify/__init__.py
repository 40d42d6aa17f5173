"""Delivery of the outbox (``events``): e-mail to the user and Standard Webhooks to receivers.

:class:`~bridge.notify.sender.Sender` runs as a thread in every gunicorn worker of every node;
the database decides which sender takes which event (``Tx.claim_events``), so nodes and
workers share the work without talking to each other.
"""
