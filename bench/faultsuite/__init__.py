"""The fault suite: a platform of real processes under every fault a database or broker
gives in production, and the proof that no accepted job was lost or started twice.

``plan`` says what runs and when each fault strikes (two sizes: ``make chaos`` and the
short variant in ``make test``), ``run`` carries it out on private servers, ``report``
turns what happened into figures, a table and a verdict.
"""
