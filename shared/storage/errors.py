"""botocore errors translated to the port's storage errors, in one place."""

from __future__ import annotations

from botocore.exceptions import BotoCoreError, ClientError

from shared.ports import ConditionFailedError, RejectedWriteError, StorageError, ThrottledError

THROTTLING_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
        "InternalServerError",
        "ServiceUnavailable",
    }
)


__all__ = [
    "THROTTLING_CODES",
    "ConditionFailedError",
    "RejectedWriteError",
    "StorageError",
    "ThrottledError",
    "translate",
]


def translate(exc: ClientError | BotoCoreError) -> StorageError:
    """Map a botocore error to a storage error (use as `raise translate(exc) from exc`)."""
    if isinstance(exc, BotoCoreError):
        return ThrottledError(f"DynamoDB unreachable: {type(exc).__name__}")
    code = exc.response.get("Error", {}).get("Code", "")
    if code in THROTTLING_CODES:
        return ThrottledError(code)
    if code == "ConditionalCheckFailedException":
        return ConditionFailedError(code)
    reasons = exc.response.get("CancellationReasons") or []
    if code == "TransactionCanceledException" and any(r.get("Code") == "ConditionalCheckFailed" for r in reasons):
        return ConditionFailedError("a transaction's condition failed")
    if code == "TransactionCanceledException" and any(
        # A conflict with another transaction on the same item (two stream shards folding into one counter) is as
        # passing as throttling: the same transaction succeeds when tried again.
        r.get("Code") in THROTTLING_CODES | {"ThrottlingError", "TransactionConflict"}
        for r in reasons
    ):
        return ThrottledError(code)
    if code == "ValidationException" or (
        code == "TransactionCanceledException" and any(r.get("Code") == "ValidationError" for r in reasons)
    ):
        # An item over 400 KB, a key over its byte limit, too many attributes…: the same write fails every time.
        return RejectedWriteError(f"{code}: {exc.response.get('Error', {}).get('Message', '')[:200]}")
    return StorageError(f"{code}: {exc.response.get('Error', {}).get('Message', '')}")
