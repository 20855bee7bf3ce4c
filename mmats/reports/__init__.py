"""Rendering results: HTML, PDF and JSON reports and their colours."""
