"""The embedded database: SQLite behind boto3's DynamoDB client API, so the one store runs on both."""
