#!/usr/bin/env python3
"""Stands in for Phase's Django manage.py: `manage.py rqworker QUEUE...`
runs a real RQ worker as django-rq's rqworker command does. With
PHASE_TEST_JOB_SECONDS set it first enqueues one job of that length, so
that a work horse is running when the reload signal arrives."""
import os
import sys

from redis import Redis
from rq import Queue, Worker

import jobs


def rqworker(queues):
    conn = Redis.from_url(os.environ["PHASE_TEST_REDIS_URL"])
    seconds = os.environ.get("PHASE_TEST_JOB_SECONDS")
    if seconds:
        Queue(queues[0], connection=conn).enqueue(jobs.slow, float(seconds), os.environ["PHASE_TEST_MARKS"])
    Worker(queues, connection=conn).work()


if __name__ == "__main__":
    if len(sys.argv) < 3 or sys.argv[1] != "rqworker":
        sys.exit("usage: manage.py rqworker QUEUE...")
    rqworker(sys.argv[2:])
