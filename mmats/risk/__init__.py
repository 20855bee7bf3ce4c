"""Risk: the only path from an order intent to a broker.

Modules, one concept each: ``decision`` (the values crossing the boundary), ``limits`` (config,
profiles, hierarchy), ``rules`` (the checks), ``exposure`` (account aggregates), ``sizing``,
``aggregation``, ``correlation``, ``sessions`` (trading hours), ``killswitch`` (states, flatten plan),
``monitor`` (automatic triggers), ``gatekeeper`` (the ``RiskGate`` that ties them together) and
``minimal`` (the two-limit gate of the first kernel issue). See docs/risk.md.
"""
