"""Sources fill a Tree and stream file data into the writer as they go."""
