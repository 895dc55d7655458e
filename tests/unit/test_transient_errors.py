import pytest
from sqlalchemy.exc import DBAPIError

from shared.db import is_transient_db_error


def dbapi_error(sqlstate):
    orig = type("AdaptedError", (Exception,), {"sqlstate": sqlstate})("boom")
    return DBAPIError("SELECT 1", {}, orig)


@pytest.mark.parametrize("sqlstate", ["40P01", "40001", "57P03", "57P01", "08006", "53300"])
def test_lost_races_and_a_server_starting_stopping_or_unreachable_are_retried(sqlstate):
    assert is_transient_db_error(dbapi_error(sqlstate))


@pytest.mark.parametrize("sqlstate", ["23505", "22P02", "42P01", None])
def test_errors_about_the_record_itself_are_not(sqlstate):
    assert not is_transient_db_error(dbapi_error(sqlstate))


def test_no_pooled_connection_free_in_time_is_retried():
    from sqlalchemy.exc import TimeoutError as PoolTimeout

    assert is_transient_db_error(PoolTimeout("QueuePool limit of size 1 overflow 0 reached"))
