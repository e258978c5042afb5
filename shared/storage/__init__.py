"""The one DynamoDB adapter: key formats, item codecs, table definition and the store."""
