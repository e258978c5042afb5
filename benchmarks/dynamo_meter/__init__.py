"""The bench's DynamoDB meter; `benchmarks/meter.py` re-exports its public names and documents what it bills."""
