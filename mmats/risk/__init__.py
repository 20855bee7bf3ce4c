"""Risk: the only path from an order intent to a broker.

Modules, one concept each: ``decision`` (the values crossing the boundary), ``limits`` (config,
profiles, hierarchy), ``rules`` (the checks), ``exposure`` (account aggregates), ``sizing``,
``aggregation``, ``correlation``, ``sessions`` (trading hours), ``killswitch`` (states, flatten plan),
``monitor`` (automatic triggers), ``gatekeeper`` (the ``RiskGate`` that ties them together) and
``minimal`` (a two-limit gate with the same protocol). See docs/risk.md.
"""
