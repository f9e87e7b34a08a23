# A result line longer than the 1 MiB line cap: a protocol error, not a result lost as a log line.
import sys
sys.stdout.write("{\"result\": {\"value\": 0.5, \"metrics\": {\"pad\": \"" + "x" * 2_000_000 + "\"}}}\n")
sys.stdout.flush()
