"""Storage: content keys, code fingerprints, manifests, Parquet schemas, the store and the catalog."""
