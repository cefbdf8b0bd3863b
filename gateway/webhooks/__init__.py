"""Events out: per-tenant webhook endpoints, signed per the Standard Webhooks specification."""
