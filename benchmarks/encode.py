"""Encode benchmark (issue 2): zhizao's vectorized line-protocol encoder against influxdb-client's
``Point`` path and its pandas ``DataframeSerializer``, on the same data, in the same run.

The data set is benchmarks/_common.py's: 1,000,000 points (3 tags, 4 fields: float, integer,
boolean, string), 1,000 series. A point is one line with four fields.

The ``Point`` path is timed on the first 100,000 points (its rate does not depend on the total;
1 M would take a quarter of a minute for nothing), the DataFrame serializer on the first 200,000.
Our encoder is timed on all points, single-threaded (the headline) and with two threads, and
its pure-numpy layout (the fallback where the C kernel is not built) single-threaded.

Usage: python benchmarks/encode.py [--quick] [--points N]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import MEASUREMENT, emit, log, make_data, parse_args
from ingest.lineprotocol import LineProtocolEncoder


def best_of(runs: int, fn) -> float:  # type: ignore[no-untyped-def]
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main(argv: list[str] | None = None) -> int:
    args = parse_args(__doc__ or "", argv)
    data = make_data(args.points)
    log(f"{args.points:,} points, {data.samples:,} samples")

    encoder = LineProtocolEncoder(data.table)
    encoder.encode(data.batch.take(slice(0, 4_000)))  # type: ignore[arg-type]  # warm the tables
    result = encoder.encode(data.batch)
    assert result.lines == args.points and not len(result.rejected_index), "encoder lost points"
    ours_s = best_of(3, lambda: encoder.encode(data.batch))
    numpy_layout = LineProtocolEncoder(data.table, kernel="numpy")
    assert numpy_layout.encode(data.batch).body == result.body, "the two layouts disagree"
    numpy_s = best_of(2, lambda: numpy_layout.encode(data.batch))
    threaded = LineProtocolEncoder(data.table, threads=2)
    threaded.encode(data.batch)
    ours2_s = best_of(3, lambda: threaded.encode(data.batch))

    from influxdb_client import Point
    from influxdb_client.client.write.dataframe_serializer import DataframeSerializer
    from influxdb_client.client.write_api import PointSettings

    n_point = min(args.points, 100_000)
    speed = data.fields["speed_rpm"][:n_point].tolist()
    count = data.fields["part_count"][:n_point].tolist()
    running = data.fields["running"][:n_point].tolist()
    program = data.fields["program"][:n_point].tolist()
    groups = data.point_group[:n_point].tolist()
    ts = data.point_ts_ns[:n_point].tolist()

    def point_path() -> bytes:
        lines = []
        for i in range(n_point):
            tags = data.tags[groups[i]]
            p = Point(MEASUREMENT)
            for k, v in tags.items():
                p.tag(k, v)
            p.field("speed_rpm", speed[i]).field("part_count", count[i])
            p.field("running", running[i]).field("program", program[i]).time(ts[i])
            lines.append(p.to_line_protocol())
        return "\n".join(lines).encode()

    point_s = best_of(1, point_path)

    n_df = min(args.points, 200_000)
    frame = data.dataframe().iloc[:n_df]

    def dataframe_path() -> bytes:
        serializer = DataframeSerializer(
            frame,
            PointSettings(),
            data_frame_measurement_name=MEASUREMENT,
            data_frame_tag_columns=["site", "line", "machine"],
        )
        return "\n".join(serializer.serialize()).encode()

    df_s = best_of(1, dataframe_path)

    points_per_s = args.points / ours_s
    point_rate = n_point / point_s
    emit(
        {
            "name": "encode",
            "points_per_s": points_per_s,
            "baseline_point_points_per_s": point_rate,
            "baseline_dataframe_points_per_s": n_df / df_s,
            "ratio_vs_point": points_per_s / point_rate,
            "ratio_vs_dataframe": points_per_s / (n_df / df_s),
            "points_per_s_2_threads": args.points / ours2_s,
            "kernel": encoder.kernel,
            "points_per_s_numpy_layout": args.points / numpy_s,
            "points": args.points,
            "samples_per_s": data.samples / ours_s,
            "bytes": len(result.body),
        }
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
