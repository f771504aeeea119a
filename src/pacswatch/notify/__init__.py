"""Cases, the outbox, templates, SMTP and exports: telling owners, following up, verifying.

Decisions are pure (cases.review, outbox.*); notify/store.py keeps the rows; workflow.plan_pass
queues what must be sent and delivery.deliver sends it.
"""
