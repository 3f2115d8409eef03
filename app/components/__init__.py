"""Pieces shared by the pages: service calls, auth, the conversation list, sources, dates."""
