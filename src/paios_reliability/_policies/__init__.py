"""Call policies: retry, timeouts and deadlines, error boundary, breaker, limiter, bulkhead, the resilient stack."""
