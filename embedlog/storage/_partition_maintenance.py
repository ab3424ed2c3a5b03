"""Partition's maintenance hooks (FORMAT.md §14): retention, compaction and DeleteRecords,
run by the cleaner under the partition's locks."""
from __future__ import annotations

import os

from . import _cleaner, _failpoints
from . import _state as st
from ._errors import OffsetOutOfRangeError
from ._partition_common import _storage_error
from ._records import now_ms


class MaintenancePart:
    """Retention, compaction and DeleteRecords of Partition: a mixin holding no state of its own."""

    # ============================================================ maintenance (FORMAT.md §14)
    def maintain(self, now: int | None = None, *, force_compaction: bool = False) -> dict:
        """Apply the topic's retention and compaction rules now (Kafka's log retention
        check and log cleaner, for this partition). `now` (epoch ms) replaces the clock,
        for tests. Returns what was done; {"skipped": ...} if another process is
        maintaining this partition at this moment."""
        self._check_open()
        now = now_ms() if now is None else now
        with self._clean_mutex:
            if not self.state.lock(st.LOCK_CLEAN, 0):
                return {"skipped": "another process is maintaining this partition"}
            self._cleaning = True
            try:
                result = {"retention": self._with_append_lock(
                    lambda fields: _cleaner.apply_retention_locked(self, fields, now))}
                if "compact" in self.config["cleanup.policy"]:
                    result["compaction"] = self._compact(now, force_compaction)
                return result
            except OSError as e:
                raise _storage_error(e, "maintenance", getattr(e, "filename", None) or self.path) from e
            finally:
                self._cleaning = False
                self.state.unlock(st.LOCK_CLEAN)

    def compact(self, now: int | None = None) -> dict | None:
        """Clean every closed segment now, whatever the dirty ratio (the cleaner's other
        rules still hold: the active segment and records younger than
        min.compaction.lag.ms are left alone). For topics whose cleanup.policy has
        "compact"; returns the cleaning's figures, or None if there was nothing to do."""
        if "compact" not in self.config["cleanup.policy"]:
            raise ValueError(f"topic {self.topic} has cleanup.policy={self.config['cleanup.policy']}, "
                             "not compact")
        return self.maintain(now, force_compaction=True).get("compaction")

    def delete_records(self, before_offset: int) -> int:
        """Kafka's DeleteRecords: move the log start offset up to `before_offset` (at most
        the high watermark); records below it are gone for readers at once, and segments
        wholly below it are deleted by the next maintenance. Returns the log start offset."""
        self._check_open()
        if not isinstance(before_offset, int) or isinstance(before_offset, bool):
            raise TypeError(f"offset must be an int, not {type(before_offset).__name__}")

        def check(fields) -> int:
            hw = fields[st.F_HIGH_WATERMARK]
            target = hw if before_offset == -1 else before_offset
            if not 0 <= target <= hw:
                raise OffsetOutOfRangeError(
                    f"cannot delete records before offset {before_offset} of {self.topic}-{self.partition} "
                    f"(high watermark {hw})", offset=before_offset,
                    log_start_offset=fields[st.F_LOG_START], log_end_offset=hw)
            return target

        def move(fields):
            target = check(fields)
            if target > fields[st.F_LOG_START]:
                ck = st.read_checkpoint(self.path)
                try:
                    st.write_checkpoint(self.path, clean=False, recovery_point=ck.get("recovery_point", 0),
                                        log_start_offset=target)
                except OSError as e:
                    raise _storage_error(e, "delete_records", getattr(e, "filename", None) or self.path) from e
                fields[st.F_LOG_START] = target
                self.state.publish(fields)
            return fields[st.F_LOG_START]
        check(self._fields())    # refused before the lock: _with_append_lock marks the state in_append
        return self._with_append_lock(move)

    def _with_append_lock(self, change):
        """Run change(fields) under the append lock with in_append set (a crash inside
        makes the next lock holder recover)."""
        with self._mutex:
            self._lock()
            try:
                fields = self._ensure_state_locked()
                self._refresh_segments(fields[st.F_SEGMENTS_VERSION])
                self.state.set_in_append(os.getpid())
                out = change(fields)
                self.state.set_in_append(0)
                return out
            finally:
                self.state.unlock(st.LOCK_APPEND)

    def _compact(self, now: int, force: bool) -> dict | None:
        fields = self._fields()
        with self._mutex:
            self._refresh_segments(fields[st.F_SEGMENTS_VERSION])
            _cleaner.remove_cleaned_files(self.path)       # a dead cleaner's leftovers
            plan = _cleaner.plan_cleaning(self, fields, now, force)
        if plan is None:
            return None
        latest = _cleaner.build_offset_map(self, plan)
        if _cleaner.read_cleaner_checkpoint(self.path) is None:
            # Mark the partition as gapped before any reader can meet a cleaned segment.
            _cleaner.write_cleaner_checkpoint(self.path, plan.first_dirty)
        totals = {"reason": plan.reason, "first_dirty_offset": plan.first_dirty,
                  "cleaned_up_to": plan.first_dirty, "keys": len(latest), "segments_in": 0,
                  "segments_out": 0, "records_in": 0, "records_out": 0, "bytes_in": 0, "bytes_out": 0,
                  "tombstones_removed": 0, "next_horizon": None}
        for group in _cleaner.group_segments(plan, self.config["segment.bytes"]):
            stats = _cleaner.clean_group(self, plan, group, latest, now)
            _failpoints.hit("cleaner.before_swap")
            if not self._with_append_lock(lambda fields: _cleaner.swap_locked(self, fields, group, plan.sizes)):
                break
            horizon = stats.pop("next_horizon")
            if horizon is not None and (totals["next_horizon"] is None or horizon < totals["next_horizon"]):
                totals["next_horizon"] = horizon
            for k, v in stats.items():
                totals[k] += v
            totals["segments_in"] += len(group)
            totals["segments_out"] += 1
        else:
            _cleaner.write_cleaner_checkpoint(self.path, max(plan.first_dirty, plan.first_uncleanable),
                                              totals["next_horizon"])
            totals["cleaned_up_to"] = plan.first_uncleanable
        return totals
