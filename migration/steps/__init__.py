"""One module per migration step; each follows the ledger protocol (migration/ledger.py)."""
