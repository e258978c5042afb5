"""The process Lambda (`ProcessFunction`): DynamoDB Streams → identities and profiles."""
