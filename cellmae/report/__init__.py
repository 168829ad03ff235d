"""Self-contained HTML report and figures from the outputs of the other stages."""
