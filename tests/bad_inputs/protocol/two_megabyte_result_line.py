# A result line longer than the 1 MiB line cap: truncated, so only a log line; no result.
import sys
sys.stdout.write("{\"result\": {\"value\": 0.5, \"metrics\": {\"pad\": \"" + "x" * 2_000_000 + "\"}}}\n")
sys.stdout.flush()
