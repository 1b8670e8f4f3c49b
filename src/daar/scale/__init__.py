"""Pools of any size: fit on a probe sample (`fit`), score block by block, locally or on Ray
(`score`, `executors`, `ray_executor`), cut exactly (`cut`); `stream.run_streaming` is `daar
select` built from these parts."""
