"""Online inference: one app per released version, at /v{version}/predict."""
