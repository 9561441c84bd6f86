"""Ordered SQL migrations (NNNN_name.sql), applied by aiinfra_app.migrate."""
