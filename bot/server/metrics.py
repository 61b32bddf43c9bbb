"""Prometheus metrics of one bot process.

Each core gets its own registry rather than prometheus-client's global one, so that
tests (and any embedding) can run several cores side by side without name clashes.
Job counts by state and the queue depth come from storage at scrape time: they are
facts about the shared database, not about this process.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

# Provider latency of FLUX.1 Kontext jobs is seconds to a minute or two.
LATENCY_BUCKETS = (1, 2, 3, 5, 7.5, 10, 15, 20, 30, 45, 60, 90, 120, 180, 300, float("inf"))
POLL_BUCKETS = (0, 1, 2, 3, 4, 5, 7, 10, 15, 20, 30, 50, float("inf"))


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "kontext_requests",
            "Edit requests reaching the core, by platform and outcome "
            "(accepted, duplicate, user_input, quota, unavailable).",
            ["platform", "outcome"],
            registry=self.registry,
        )
        self.jobs = Gauge(
            "kontext_jobs",
            "Jobs in storage by state (read at scrape time).",
            ["state"],
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "kontext_queue_depth",
            "Jobs waiting for a worker (read at scrape time).",
            registry=self.registry,
        )
        self.jobs_finished = Counter(
            "kontext_jobs_finished",
            "Jobs this process brought to a terminal state, by state.",
            ["state"],
            registry=self.registry,
        )
        self.provider_latency = Histogram(
            "kontext_provider_latency_seconds",
            "Time from submitting a job to the provider to its final status.",
            ["provider", "model"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.status_requests = Histogram(
            "kontext_status_requests_per_job",
            "Status requests sent to the provider for one job.",
            ["provider"],
            buckets=POLL_BUCKETS,
            registry=self.registry,
        )
        self.credits_charged = Counter(
            "kontext_credits_charged",
            "Credits charged for delivered images.",
            registry=self.registry,
        )
        self.credits_refunded = Counter(
            "kontext_credits_refunded",
            "Credits refunded for failed jobs.",
            registry=self.registry,
        )
        self.errors = Counter(
            "kontext_errors",
            "Failed jobs by error kind (user_input, moderation, provider_unavailable, platform, "
            "internal).",
            ["kind"],
            registry=self.registry,
        )

        self.platform_calls = Counter(
            "kontext_platform_calls",
            "Chat platform API calls by platform, method and outcome (ok, ratelimited, "
            "error); a call slack_sdk retried counts once, by how it ended.",
            ["platform", "method", "outcome"],
            registry=self.registry,
        )
        self.platform_rate_limited = Counter(
            "kontext_platform_rate_limited",
            "HTTP 429 answers from the chat platforms, each one counted, by method.",
            ["platform", "method"],
            registry=self.registry,
        )
        self.deliveries_waiting = Gauge(
            "kontext_deliveries_waiting",
            "Finished results this process holds back because the platform said slow down.",
            ["platform"],
            registry=self.registry,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
