"""Console views: thin. They read through selectors and act through services."""
