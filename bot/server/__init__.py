"""What the process serves besides the platforms: the operator's endpoints (``ops``),
the providers' webhooks, metrics, logs, the local HTTP server and the online check."""
