"""PharmGPT: the composition root (the `pharmgpt` command, wiring) over the product packages.

The product folders (app, services, rag, migration, localbase, sql) install as
`pharmgpt.<folder>` through pyproject's package-dir mapping, so site-packages gets one name.
"""
