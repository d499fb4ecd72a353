"""The job the worker stand-in runs: it marks its start and its end, so a
test knows that the work horse ran it to the end."""
import os
import time


def slow(seconds, marks):
    with open(os.path.join(marks, "job-started-%d" % os.getpid()), "w"):
        pass
    time.sleep(seconds)
    with open(os.path.join(marks, "job-done-%d" % os.getpid()), "w"):
        pass
