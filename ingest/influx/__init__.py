"""InfluxDB client: the line-protocol writer (v1 ``/write``, v2 ``/api/v2/write``) and the
InfluxQL reader (``/query``, results as numpy columns)."""

from ingest.influx.config import InfluxConfig
from ingest.influx.reader import InfluxQLReader, ResultSeries
from ingest.influx.writer import InfluxWriter, WriteReport, WriterStats

__all__ = [
    "InfluxConfig",
    "InfluxQLReader",
    "InfluxWriter",
    "ResultSeries",
    "WriteReport",
    "WriterStats",
]
