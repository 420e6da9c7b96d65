"""pullctl: scheduled pull ingestion from HTTP/REST JSON APIs; a new source is a YAML file, never code."""

__version__ = "0.1.0"
