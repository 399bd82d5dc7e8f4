"""The InfluxQL reader against a real InfluxDB 1.6: exact numpy columns, chunked responses, bind
parameters, and errors as QueryError naming the statement."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from ingest.influx import InfluxConfig, InfluxQLReader, InfluxWriter
from ingest.influx.reader import split_statements
from tests.conftest import InfluxDb
from zhizao.errors import QueryError

pytestmark = pytest.mark.integration

BODY = (
    b'line,machine=a load=1.5,parts=10i,running=true,program="O1" 1000\n'
    b'line,machine=a load=2.25,parts=11i,running=false,program="O2 \\"x\\"" 2000\n'
    b"line,machine=a load=-3.125,parts=-9007199254740993i,running=true 3000\n"
    b"line,machine=b parts=7i 1500\n"
)


async def written(influx_db: InfluxDb, **overrides: Any) -> InfluxConfig:
    config = InfluxConfig.model_validate(
        {"url": influx_db.url, "database": influx_db.database, **overrides}
    )
    async with InfluxWriter(config) as writer:
        await writer.write_body(BODY, lines=4)
    return config


async def test_columns_are_exact_numpy_arrays(influx_db: InfluxDb) -> None:
    config = await written(influx_db)
    async with InfluxQLReader(config) as reader:
        a, b = await reader.query("SELECT * FROM line GROUP BY machine")
    assert (a.name, a.tags, b.tags) == ("line", {"machine": "a"}, {"machine": "b"})
    assert a.columns == ["time", "load", "parts", "program", "running"]
    assert a.time_ns.dtype == np.int64 and a.time_ns.tolist() == [1000, 2000, 3000]
    assert a.values["load"].dtype == np.float64
    assert a.values["load"].tolist() == [1.5, 2.25, -3.125]
    # all integers: int64, exact beyond 2**53
    assert a.values["parts"].dtype == np.int64
    assert a.values["parts"].tolist() == [10, 11, -9007199254740993]
    assert a.values["running"].dtype == np.bool_
    assert a.values["running"].tolist() == [True, False, True]
    assert a.values["program"].dtype == object
    assert a.values["program"].tolist() == ["O1", 'O2 "x"', None]
    # machine b has only parts: the other float column is all null -> NaN
    assert b.time_ns.tolist() == [1500]
    assert np.isnan(b.values["load"]).all()
    assert len(a) == 3 and len(b) == 1


async def test_nulls_in_numbers_become_nan(influx_db: InfluxDb) -> None:
    config = await written(influx_db)
    async with InfluxQLReader(config) as reader:
        (s,) = await reader.query("SELECT load, parts FROM line")
    assert s.time_ns.tolist() == [1000, 1500, 2000, 3000]
    assert s.values["load"].dtype == np.float64
    assert np.array_equal(s.values["load"], [1.5, np.nan, 2.25, -3.125], equal_nan=True)


async def test_chunked_response_is_merged(influx_db: InfluxDb) -> None:
    config = await written(influx_db)
    async with InfluxQLReader(config) as reader:
        whole = await reader.query("SELECT * FROM line")
        chunked = await reader.query("SELECT * FROM line", chunked=True, chunk_size=1)
    assert len(whole) == len(chunked) == 1
    assert np.array_equal(whole[0].time_ns, chunked[0].time_ns)
    for name, column in whole[0].values.items():
        other = chunked[0].values[name]
        assert column.dtype == other.dtype, name
        if column.dtype.kind == "f":
            assert np.array_equal(column, other, equal_nan=True), name
        else:
            assert column.tolist() == other.tolist(), name


async def test_bind_parameters(influx_db: InfluxDb) -> None:
    config = await written(influx_db)
    async with InfluxQLReader(config) as reader:
        (s,) = await reader.query(
            "SELECT parts FROM line WHERE machine = $m AND load > $min",
            params={"m": "a", "min": 2.0},
        )
    assert s.values["parts"].tolist() == [11]


async def test_several_statements_and_aggregates(influx_db: InfluxDb) -> None:
    config = await written(influx_db)
    async with InfluxQLReader(config) as reader:
        result = await reader.query(
            "SELECT count(parts) FROM line; SELECT sum(load) FROM line WHERE machine = 'a'"
        )
    assert [s.statement_id for s in result] == [0, 1]
    assert result[0].values["count"].tolist() == [4]
    assert result[1].values["sum"].tolist() == [0.625]


async def test_statement_error_names_the_statement(influx_db: InfluxDb) -> None:
    config = await written(influx_db)
    async with InfluxQLReader(config) as reader:
        with pytest.raises(QueryError) as info:
            await reader.query("SELECT * FROM line; SELECT mean(load) FROM line GROUP BY time(x)")
        assert "statement 2" in info.value.message
        assert "GROUP BY time(x)" in (info.value.detail or "")
        with pytest.raises(QueryError) as info:
            await reader.query("SELEC * FROM line")
        assert "HTTP 400" in info.value.message
        with pytest.raises(QueryError) as info:
            await reader.query("SELECT * FROM line", database="no_such_db")
        assert "database not found" in info.value.message


async def test_unreachable_server_is_a_query_error() -> None:
    config = InfluxConfig(url="http://127.0.0.1:9", database="x", timeout_s=2)
    async with InfluxQLReader(config) as reader:
        with pytest.raises(QueryError) as info:
            await reader.query("SELECT 1")
    assert "cannot be reached" in info.value.message
    assert "127.0.0.1:9" in (info.value.detail or "")


def test_split_statements_respects_quotes() -> None:
    q = "SELECT * FROM \"a;b\" WHERE x = 'c;d'; SHOW DATABASES;"
    assert split_statements(q) == ["SELECT * FROM \"a;b\" WHERE x = 'c;d'", "SHOW DATABASES"]
