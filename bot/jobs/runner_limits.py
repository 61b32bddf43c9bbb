"""The knobs of the job runner (from ``[jobs]`` and ``[images]``), in one place for the
worker that schedules jobs and the pipeline that runs one."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RunnerLimits:
    max_concurrent: int = 8
    job_timeout: float = 300.0
    lease_seconds: float = 60.0
    poll_initial: float = 2.0
    poll_max: float = 5.0
    delivery_attempts: int = 3
    delivery_backoff: float = 0.5
    # How long a finished, paid result may wait for a platform that says "slow down"
    # (429) before it is refunded, counted from the first such answer.
    delivery_deadline: float = 3600.0
    keep_images_hours: float = 0.0
    # How long a job waits after the provider's 429 when it gives no Retry-After.
    hold_seconds: float = 5.0
    max_input_bytes: int = 20_000_000
    max_input_pixels: int = 20_000_000
    # The sum of one job's inputs (several images, issue 26).
    max_total_input_bytes: int = 50_000_000
    max_output_bytes: int = 50_000_000
    # How often the dispatcher looks for work it was not woken for (other processes'
    # jobs, expired leases).
    idle_scan_seconds: float = 1.0
    # Jobs downloading, validating and uploading their inputs at the same time.
    max_preparing: int = 8
    # At most one step-progress message ("step 12 of 28") per job this often.
    progress_interval: float = 1.5
