"""Scenario: every instance sees every task's history, within the flush latency.

Producers enqueue demo tasks through the load balancer (mostly fast_task, some retried and some
failing ones). Each accepted task is followed through the load balancer until an instance other
than the one that ran it shows it finished; the delay from its end_time is reported as
``history_lag``. A task not seen finished that way within --task-timeout is lost.

    locust -f loadtest/visibility.py --config loadtest/locust.conf --host http://127.0.0.1:8080

Fails when: any task is lost or ends in a status its endpoint cannot produce, the history_lag
p99 exceeds --lag-p99, or HTTP requests fail beyond --max-error-ratio.
"""

from __future__ import annotations

from common import options, thresholds  # noqa: F401 - registers the quitting hook
from common.users import Producer, follow_accepted

options.register("visibility")
follow_accepted()


class VisibilityProducer(Producer):
    pass
