"""Fan a list of cases out over forked worker processes (the crash-point and power-loss
harnesses share it). A worker that dies with an exception reports it as an anomaly."""
from __future__ import annotations

import json
import os
import traceback


def fan_out(base: str, workers: int, cases: list, run, scenario_name: str) -> list[dict]:
    """run(cases_for_worker, workdir) -> dict (JSON-able), in `min(workers, len(cases))`
    forked children; returns their dicts. A crashed worker returns
    {"anomalies": [{"anomaly": "worker crashed", ...}]}."""
    pids = []
    for w in range(min(workers, len(cases)) or 1):
        r, wfd = os.pipe()
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                os.close(r)
                sub = os.path.join(base, f"worker{w}")
                os.mkdir(sub)
                os.write(wfd, json.dumps(run(cases[w::workers], sub), default=str).encode())
            except BaseException:
                os.write(wfd, json.dumps({"anomalies": [
                    {"scenario": scenario_name, "anomaly": "worker crashed", "trace": traceback.format_exc()}]}
                ).encode())
                code = 3
            finally:
                os._exit(code)
        os.close(wfd)
        pids.append((pid, r))
    results = []
    for pid, r in pids:
        with os.fdopen(r, "rb") as f:
            results.append(json.loads(f.read() or b'{"anomalies": []}'))
        os.waitpid(pid, 0)
    return results
