"""How DynamoDB's errors map to the storage port's: what is worth trying again, and what never is."""

from __future__ import annotations

from botocore.exceptions import ClientError

from shared.storage.errors import ConditionFailedError, RejectedWriteError, ThrottledError, translate


def _cancelled(*codes: str) -> ClientError:
    response = {
        "Error": {"Code": "TransactionCanceledException", "Message": "cancelled"},
        "CancellationReasons": [{"Code": code} for code in codes],
    }
    return ClientError(response, "TransactWriteItems")  # type: ignore[arg-type]


def test_a_transaction_cancelled_by_a_conflict_or_throttling_is_tried_again():
    assert isinstance(translate(_cancelled("None", "TransactionConflict")), ThrottledError)
    assert isinstance(translate(_cancelled("ThrottlingError", "None")), ThrottledError)


def test_a_transaction_cancelled_by_a_condition_or_a_bad_item_is_not():
    assert isinstance(translate(_cancelled("None", "ConditionalCheckFailed")), ConditionFailedError)
    assert isinstance(translate(_cancelled("ValidationError")), RejectedWriteError)
