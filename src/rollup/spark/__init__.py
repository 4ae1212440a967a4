"""The Spark runtime: jars, the session, sizing and error translation."""
