"""The fold Lambda (`FoldFunction`): DynamoDB Streams → the counters (a second reader of the stream)."""
