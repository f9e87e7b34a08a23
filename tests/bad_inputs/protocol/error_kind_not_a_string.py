import sys
print("{\"error\": {\"kind\": 3, \"message\": \"ran out\"}}", flush=True)
sys.exit(75)
