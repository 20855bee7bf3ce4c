"""Strategies shipped with MMATS: each module one plain ``IStrategy``, selectable by name."""
