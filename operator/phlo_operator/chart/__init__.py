"""The chart's typed values model and the generators of its derived files (schema, docs, RBAC, CRD)."""
