"""Streamlit's config.toml, shipped so an installed `pharmgpt run` uses the same settings."""
