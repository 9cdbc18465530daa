"""Writes N small flows with mitmproxy's own test flows (tflow), as the input of the flow file
benchmark. Run with the Python of a venv that has mitmproxy installed."""
import sys

from mitmproxy import io
from mitmproxy.test import tflow

path, count = sys.argv[1], int(sys.argv[2])
with open(path, "wb") as f:
    writer = io.FlowWriter(f)
    for _ in range(count):
        writer.add(tflow.tflow(resp=True))
