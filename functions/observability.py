"""The Powertools logger and metrics singletons; nothing else instantiates them."""

from aws_lambda_powertools import Logger, Metrics

logger = Logger(service="footfall")
metrics = Metrics(namespace="Footfall", service="footfall")
