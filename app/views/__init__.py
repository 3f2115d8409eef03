"""One module per page; each runs `render()` when Streamlit executes it as a page."""
