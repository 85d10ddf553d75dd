"""Storage: the stage registry, content keys, code fingerprints, manifests, the store and its resolver, the
catalog, and per artifact kind its files, schema, summary, writer, reader and charts."""
