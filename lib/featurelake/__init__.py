"""featurelake: Spark jobs from raw customer data to Delta tables, features and models."""

__version__ = "0.1.0"
