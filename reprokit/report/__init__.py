"""Report stage: turns captured facts and comparisons into text, JSON, JUnit and HTML."""
