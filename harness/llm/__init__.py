"""Every model call: the litellm client (concurrency, retries, cache, cost, latency), local model servers, and
turning output into labels. Nothing here is imported by `harness --help` or `harness report`."""
