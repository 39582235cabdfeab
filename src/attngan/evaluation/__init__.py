"""Networks and procedures that judge generated images (classifiers, feature extractors)."""
