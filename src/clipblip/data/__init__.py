"""Data: the generated Shapes world, dataset readers and webdataset shards. Records are plain dicts (see readers)."""
