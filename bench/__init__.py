"""The benchmark harness (see ``bench/ratio.py``; run it with ``bench/run.sh``)."""
